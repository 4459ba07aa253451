"""The floor under the local stack's figures: a step's AWS calls alone, with nothing between.

A chain step on the local stack is, in AWS calls: a tenth of a ReceiveMessage (batches of
ten), the slot check's Query, the commit's conditional PutItem, a tenth of a
SendMessageBatch (the next hops of a batch) and a tenth of a DeleteMessageBatch. This script
makes exactly those calls, of the same shapes, for ``--runs`` chains of ``--steps`` steps, to
the moto process the stack uses, through the same clients (botocore over the Unix socket,
infra/moto/socket.py) from ``--pollers`` threads that each receive a batch and then make its
calls one after another. No tool, no engine, no run service, no events: what is left is
what botocore and moto cost per step on this machine, a floor under the stack's own CPU per
step and above its throughput.

It then runs benchmarks/local_load.py's measurement on the real stack with the same runs and
steps, and prints both side by side, with the ratios. With every run's one hop always
waiting in the queue or being applied, a hop waits (runs in flight) / (steps per second) on
average (Little's law), so the floor's steps/s bounds the hop latency any code on this
stack can reach with that many runs in flight.

Run: ``.venv/bin/python benchmarks/local_floor.py [--runs 1000] [--steps 10]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.local_load import measure as measure_stack  # noqa: E402
from benchmarks.local_load import percentile, tree_cpu_seconds  # noqa: E402
from engine.ports import StepRecord  # noqa: E402
from functions.aws import dynamodb_items as items  # noqa: E402
from functions.aws.dynamodb_store import SLOT_FREE  # noqa: E402
from infra.moto.process import MotoProcess  # noqa: E402
from infra.stack import local_clients  # noqa: E402
from infra.stack.local_stack import free_port  # noqa: E402
from infra.template import reader as template  # noqa: E402

REGION = "us-east-1"
WAIT_S = 1


@dataclass
class Floor:
    steps: int
    window_s: float
    cpu_s: float
    """Both processes: the callers' (this one) and moto's."""
    moto_cpu_s: float
    hop_ms: list[float]

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.window_s

    @property
    def cpu_ms_per_step(self) -> float:
        return self.cpu_s / self.steps * 1000

    @property
    def moto_ms_per_step(self) -> float:
        return self.moto_cpu_s / self.steps * 1000


class BareChains:
    """``runs`` chains of ``steps`` steps through moto, the calls of a step and no more."""

    def __init__(
        self, moto: MotoProcess, table: str, queue_url: str, runs: int, steps: int
    ) -> None:
        pool = 64
        self.dynamodb = local_clients.pooled("dynamodb", pool, REGION, moto.socket_path)
        self.sqs = local_clients.pooled("sqs", pool, REGION, moto.socket_path)
        self.table, self.queue_url, self.runs, self.steps = table, queue_url, runs, steps
        self.commits: dict[tuple[str, int], float] = {}
        self.done = threading.Event()
        self._lock = threading.Lock()

    def start(self) -> None:
        hops = [self._hop(f"r{i:05d}", 0) for i in range(self.runs)]
        for first in range(0, len(hops), 10):
            self._send(hops[first : first + 10])

    def poll(self) -> None:
        while not self.done.is_set():
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=WAIT_S,
                AttributeNames=["All"], MessageAttributeNames=["All"],
            ).get("Messages", [])  # fmt: skip
            if not messages:
                continue
            successors = [hop for m in messages if (hop := self._apply(json.loads(m["Body"])))]
            if successors:
                self._send(successors)
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                         for i, m in enumerate(messages)],
            )  # fmt: skip

    def _apply(self, hop: dict[str, Any]) -> str | None:
        """The slot check's Query and the commit's conditional PutItem; the next hop."""
        run_id, seq = hop["run_id"], hop["seq"]
        self.dynamodb.query(
            TableName=self.table, ConsistentRead=True, Limit=25,
            KeyConditionExpression="PK = :pk AND SK BETWEEN :origin AND :subs_end",
            ExpressionAttributeValues={
                ":pk": {"S": f"RUN#{run_id}"},
                ":origin": {"S": "RUN" if seq == 0 else items.step_sk(seq - 1)},
                ":subs_end": {"S": "SUB$"},
            },
        )  # fmt: skip
        state = {**hop["state"], "count": hop["state"]["count"] + 1}
        self.dynamodb.put_item(
            TableName=self.table, Item=items.step_item(self._step(run_id, seq, state)),
            ConditionExpression=SLOT_FREE,
        )  # fmt: skip
        with self._lock:
            self.commits[run_id, seq] = time.time()
            if len(self.commits) == self.runs * self.steps:  # every chain has ended
                self.done.set()
        return None if seq + 1 == self.steps else self._hop(run_id, seq + 1, state)

    def _step(self, run_id: str, seq: int, state: dict[str, Any]) -> StepRecord:
        return StepRecord(
            run_id=run_id, seq=seq, node=f"s{seq}", tool="increment", status="ok",
            updates={"count": state["count"]}, state=state,
            next_node=f"s{seq + 1}" if seq + 1 < self.steps else "END",
            started_at=time.time(), duration_ms=0.01, committed_by="floor",
            run_status="running" if seq + 1 < self.steps else "completed",
        )  # fmt: skip

    def _hop(self, run_id: str, seq: int, state: dict[str, Any] | None = None) -> str:
        doc = {"run_id": run_id, "graph_id": "chain", "seq": seq, "node": f"s{seq}",
               "max_steps": self.steps + 1, "state": state or {"count": 0}}  # fmt: skip
        return json.dumps(doc, separators=(",", ":"))

    def _send(self, bodies: list[str]) -> None:
        self.sqs.send_message_batch(
            QueueUrl=self.queue_url,
            Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies)],
        )


def measure_floor(runs: int, steps: int, pollers: int) -> Floor:
    doc = template.load_template(ROOT / "template.yaml")
    with tempfile.TemporaryDirectory(prefix="hopgraph-floor-") as data:
        moto = MotoProcess("127.0.0.1", free_port(), Path(data), local_socket=True)
        moto.start()
        try:
            return _run_chains(moto, doc, runs, steps, pollers)
        finally:
            moto.stop()


def _run_chains(moto: MotoProcess, doc: Any, runs: int, steps: int, pollers: int) -> Floor:
    import boto3

    dynamodb = boto3.client("dynamodb", endpoint_url=moto.endpoint, region_name=REGION)
    template.create_table(dynamodb, "floor-table", doc)
    sqs = boto3.client("sqs", endpoint_url=moto.endpoint, region_name=REGION)
    urls = template.create_queues(sqs, {"StepQueue": "floor-steps"}, doc)
    chains = BareChains(moto, "floor-table", urls["StepQueue"], runs, steps)
    moto_pid = moto.pid
    cpu_before = tree_cpu_seconds(os.getpid()) or 0.0
    moto_before = tree_cpu_seconds(moto_pid) or 0.0
    t0 = time.time()
    chains.start()
    threads = [threading.Thread(target=chains.poll, daemon=True) for _ in range(pollers)]
    for thread in threads:
        thread.start()
    chains.done.wait(timeout=1800)
    window = max(chains.commits.values()) - t0
    cpu = (tree_cpu_seconds(os.getpid()) or 0.0) - cpu_before
    moto_cpu = (tree_cpu_seconds(moto_pid) or 0.0) - moto_before
    chains.done.set()
    for thread in threads:
        thread.join(timeout=WAIT_S + 5)
    hop_ms = [
        (chains.commits[r, s] - chains.commits[r, s - 1]) * 1000
        for (r, s) in chains.commits
        if s > 0 and (r, s - 1) in chains.commits
    ]
    return Floor(len(chains.commits), window, cpu, moto_cpu, hop_ms)


def _row(name: str, floor: str, stack: str, ratio: str) -> str:
    return f"{name:<34}{floor:>14}{stack:>14}{ratio:>16}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--pollers", type=int, default=16, help="threads of the bare chains")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    # the stack's credentials for moto (infra/stack/local_stack.py), for this process's clients
    os.environ.update(AWS_ACCESS_KEY_ID="local", AWS_SECRET_ACCESS_KEY="local")

    print(f"{args.runs} runs of {args.steps} steps, {cores} cores: the bare calls, then the stack")
    floor = measure_floor(args.runs, args.steps, args.pollers)
    stack_args = argparse.Namespace(
        runs=args.runs, steps=args.steps, concurrency=32, deadline=1800.0, dispatch="sqs"
    )
    stack = measure_stack(stack_args)
    stack_cpu_ms = (stack.cpu_s or float("nan")) / stack.steps * 1000
    print(_row("", "bare calls", "stack", "stack / bare"))
    print(_row("steps/s", f"{floor.steps_per_s:.0f}", f"{stack.steps_per_s:.0f}",
               f"{stack.steps_per_s / floor.steps_per_s:.2f}"))  # fmt: skip
    print(_row("CPU per step (ms, both processes)", f"{floor.cpu_ms_per_step:.2f}",
               f"{stack_cpu_ms:.2f}", f"{stack_cpu_ms / floor.cpu_ms_per_step:.2f}"))  # fmt: skip
    for q in (50, 99):
        bare, full = percentile(floor.hop_ms, q), percentile(stack.hop_ms, q)
        print(_row(f"hop latency p{q} (ms)", f"{bare:.0f}", f"{full:.0f}", f"{full / bare:.2f}"))
    print(f"the bare calls' CPU per step: moto {floor.moto_ms_per_step:.2f} ms, the callers "
          f"(botocore) {floor.cpu_ms_per_step - floor.moto_ms_per_step:.2f} ms")  # fmt: skip
    for what, ms, room in (
        ("moto's process (one core: one GIL)", floor.moto_ms_per_step, 1),
        (f"the bare calls ({cores} cores)", floor.cpu_ms_per_step, cores),
    ):
        best = room / ms * 1000
        print(f"{what} fully used: {best:.0f} steps/s at most, so with {args.runs} runs in "
              f"flight a hop waits {args.runs / best * 1000:.0f} ms on average at least "
              f"(Little's law)")  # fmt: skip
    print(f"lost {stack.lost} steps_per_s {stack.steps_per_s:.1f}")
    return 1 if stack.lost else 0


if __name__ == "__main__":
    sys.exit(main())
