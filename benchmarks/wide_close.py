"""The close of a wide superstep, per invocation: one read of every task record against a
fold over several hops (engine/fold.py).

A map of n items of ``emit`` (one ``add`` a task) on the DynamoDB store on moto, in this
process (with the local stack's moto speed-ups), and on the memory store. Its first n - 1
task records are written directly (a batch write: setup, not timed) with their count; then
the last item's hop is delivered through the run service, as a worker would: it commits and
closes. Timed: that invocation (the closer's), and each fold hop it leads to, one after the
other. The reference printed beside each figure: the same close by a single read
(``fold_above`` above n), the way every superstep closed before the fold.

What matters is the longest invocation: a Lambda worker stops at its timeout (30 s in
template.yaml), and a close that reads every record in one invocation grows with n.

Printed: one line per store and size, with the single read's seconds, the fold's longest and
total invocation seconds, its hops, and the ratio of the longest to the single read; the last
line is ``wide_close_longest_s N1:T1 N2:T2 ...`` (DynamoDB on moto).

Run: ``.venv/bin/python benchmarks/wide_close.py [--items 10000 100000] [--moto-items
10000]`` (on moto, 100,000 records take most of an hour to write and read on a loaded
two-core machine: pass ``--moto-items 10000 100000`` to time them too).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.memory import MemoryQueue, MemoryRunStore  # noqa: E402
from engine.ports import Hop, RunStore, TaskRecord  # noqa: E402
from engine.service import EngineConfig, RunService  # noqa: E402
from engine.tools import load_toolkits  # noqa: E402

TABLE = "hopgraph-wide-close"
MAP = {
    "name": "counted_map",
    "entry": "item",
    "state": {"total": {"reducer": "add"}},
    "nodes": {"item": {"tool": "emit", "settings": {"key": "total", "value": 1},
                       "map": {"over": "docs", "as": "doc"}}},
    "edges": {"item": "END"},
}  # fmt: skip


@contextmanager
def moto_store() -> Iterator[RunStore]:
    import boto3
    from moto import mock_aws

    from functions.aws.dynamodb_store import DynamoRunStore
    from infra.moto.speedups import faster_moto
    from infra.template.reader import create_table

    with mock_aws(), faster_moto():
        client = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="x",
                              aws_secret_access_key="x")  # fmt: skip
        create_table(client, TABLE)
        yield DynamoRunStore(TABLE, client)


def prefill(store: RunStore, run_id: str, items: int) -> None:
    """The first ``items - 1`` task records of superstep 0, and their count."""
    records = [
        TaskRecord(run_id=run_id, seq=0, node="item", index=i, tool="emit", status="ok",
                   updates={"total": 1}, targets=("END",), started_at=time.time(),
                   duration_ms=0.01, committed_by=f"m{i}")
        for i in range(items - 1)
    ]  # fmt: skip
    if isinstance(store, MemoryRunStore):
        for record in records:
            store.commit_task(record, counted=True)
        return
    from functions.aws import dynamodb_items as items_

    puts = [{"PutRequest": {"Item": items_.task_item(r)}} for r in records]
    store._batch_write(puts)  # type: ignore[attr-defined]
    store._call("update_item", TableName=TABLE,  # type: ignore[attr-defined]
                Key=items_.task_count_key(run_id, 0), UpdateExpression="ADD done :n",
                ExpressionAttributeValues={":n": {"N": str(items - 1)}})  # fmt: skip


def close_times(store: RunStore, items: int, fold: bool) -> list[float]:
    """Seconds of each invocation of the close: the closer's, then each fold hop's."""
    tools = load_toolkits(["engine.toolkits.basics"])
    queue = MemoryQueue()
    config = EngineConfig(fold_above=4096 if fold else items + 1)
    service = RunService(store, queue, tools, config=config)
    graph_id = service.create_graph(MAP)[0].graph_id
    run = service.start_run(graph_id, {"docs": [0] * items})[0]
    queue.hops.clear()  # the first window: its records are written below
    prefill(store, run.run_id, items)
    hops = [Hop(run.run_id, graph_id, 0, "item", index=items - 1, parallel=True)]
    times: list[float] = []
    while hops:
        started = time.perf_counter()
        service.process_hop(hops.pop(), f"d{len(times)}")
        times.append(time.perf_counter() - started)
        hops.extend(h for h in queue.hops if h.fold)
        queue.hops.clear()
    done = store.get_run(run.run_id)
    if done.status != "completed" or done.state.get("total") != items:
        raise RuntimeError(f"{items} items: {done.status} {done.error} {done.state}")
    return times


def measure(name: str, store_of: Callable[[], Any], items: int) -> float:
    with store_of() as store:
        single = close_times(store, items, fold=False)
    with store_of() as store:
        folded = close_times(store, items, fold=True)
    longest = max(folded)
    print(
        f"{name:>13}, {items:>7,} tasks: single read {single[0]:7.2f} s   fold: longest "
        f"{longest:6.2f} s, total {sum(folded):7.2f} s over {len(folded)} invocations   "
        f"(longest / single read {longest / single[0]:.2f})"
    )
    return longest


@contextmanager
def memory_store() -> Iterator[RunStore]:
    yield MemoryRunStore()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, nargs="*", default=[10_000, 100_000])
    moto_help = "sizes also timed on DynamoDB/moto (about 6 ms a record, loaded)"
    parser.add_argument("--moto-items", type=int, nargs="*", default=[10_000], help=moto_help)
    args = parser.parse_args(argv)
    longest = {}
    for items in args.items:
        measure("memory", memory_store, items)
        if items in args.moto_items:
            longest[items] = measure("DynamoDB/moto", moto_store, items)
    print("wide_close_longest_s " + " ".join(f"{n}:{s:.2f}" for n, s in longest.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
