"""A wide map's start and finish: how long ``POST /runs`` of a 10,000-item map takes to
answer on the local stack (a request dispatches only the map's first window; workers send the
rest as items commit), and how long maps of 10,000 and 100,000 items take to complete in
process and on the local stack.

The map's tool is ``emit`` (one ``add`` to a counter per item: microseconds of tool time and
a state that stays small), so the figures are the protocol's own cost. The reference printed
beside each: the same request, or the same map, at one item (``POST /runs``) or in process.

Printed: one line per figure, with its reference and the ratio; the last line is
``map_start_post_ms N`` (the 10,000-item ``POST /runs``, target < 1,000).

Run: ``.venv/bin/python benchmarks/map_start.py [--stack-items 10000] [--in-process-items
10000 100000] [--repeat 3]`` (``--repeat``: the 10,000-item maps started and timed, whose
completion is the 10,000-item stack figure). The local stack's 100,000-item map takes
about a quarter of an hour on two cores (17 minutes at a load of about 3, docs/benchmarks.md):
pass ``--stack-items 10000 100000`` to time it too.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the stack launcher lives with the end-to-end tests

from tests.e2e.stack import StackFailed, launch  # noqa: E402

POLL_S = 0.2
DEADLINE_S = 3_600.0
START_ITEMS = 10_000
MAP = {
    "name": "counted_map",
    "entry": "item",
    "state": {"total": {"reducer": "add"}},
    "nodes": {
        "item": {
            "tool": "emit",
            "settings": {"key": "total", "value": 1},
            "map": {"over": "docs", "as": "doc"},
        }
    },
    "edges": {"item": "END"},
}


def docs(items: int) -> dict[str, Any]:
    return {"docs": [0] * items}


def post_ms(client: httpx.Client, graph_id: str, items: int) -> tuple[float, str]:
    """Milliseconds ``POST /runs`` took to answer, and the run's id."""
    started = time.perf_counter()
    reply = client.post("/runs", json={"graph_id": graph_id, "input": docs(items)})
    elapsed = (time.perf_counter() - started) * 1000
    return elapsed, str(reply.raise_for_status().json()["run_id"])


def wait_done(client: httpx.Client, run_id: str, items: int, started: float) -> float:
    """Seconds from ``started`` to the poll that found the run completed, every item counted."""
    while (run := client.get(f"/runs/{run_id}").raise_for_status().json())["status"] == "running":
        if time.perf_counter() - started > DEADLINE_S:
            raise RuntimeError(f"run {run_id} still running after {DEADLINE_S:.0f} s")
        time.sleep(POLL_S)
    if run["status"] != "completed" or run["state"].get("total") != items:
        raise RuntimeError(f"run {run_id} ended {run['status']}: {run.get('error')}")
    return time.perf_counter() - started


def in_process_seconds(items: int) -> float:
    from engine.runner import InProcessRunner
    from engine.tools import load_toolkits
    from engine.validation import build_graph

    tools = load_toolkits(["engine.toolkits.basics"])
    graph = build_graph(MAP, tools.names())
    started = time.perf_counter()
    result = InProcessRunner(tools).run(graph, docs(items))
    if result.status != "completed" or result.state.get("total") != items:
        raise RuntimeError(f"in process: {result.status}: {result.error}")
    return time.perf_counter() - started


def on_the_stack(
    stack_items: list[int], repeat: int = 3
) -> tuple[float, float, Small, Small, dict[int, float]]:
    """The median of ``repeat`` ``POST /runs`` of the 10,000-item map and of three of a
    one-item map; a one-item run's completion time (and its wait before its task started) alone
    and while a 10,000-item map runs;
    and each ``stack_items`` map's completion time (the 10,000-item one: the median of the
    maps just timed, not one more)."""
    stack = launch()
    try:
        with httpx.Client(base_url=stack.api, timeout=120.0) as client:
            graph_id = client.post("/graphs", json=MAP).raise_for_status().json()["graph_id"]
            wait_done(client, post_ms(client, graph_id, 1)[1], 1, time.perf_counter())  # warm
            one = statistics.median(post_ms(client, graph_id, 1)[0] for _ in range(3))
            alone = one_run_seconds(client, graph_id)
            wide, wide_done = [], []
            for _ in range(repeat):  # each started, timed, then let finish before the next
                started = time.perf_counter()
                ms, run_id = post_ms(client, graph_id, START_ITEMS)
                wide.append(ms)
                beside = one_run_seconds(client, graph_id)  # a small run behind the map
                wide_done.append(wait_done(client, run_id, START_ITEMS, started))
            done = {START_ITEMS: statistics.median(wide_done)} if START_ITEMS in stack_items else {}
            for items in (n for n in stack_items if n != START_ITEMS):
                started = time.perf_counter()
                done[items] = wait_done(client, post_ms(client, graph_id, items)[1], items, started)
    finally:
        try:
            stack.stop(timeout=60)
        except StackFailed as exc:  # the figures stand; the failed stop is reported
            print(f"warning: {str(exc).splitlines()[0]}", file=sys.stderr)
    return statistics.median(wide), one, alone, beside, done


def one_run_seconds(client: httpx.Client, graph_id: str) -> Small:
    started = time.perf_counter()
    run_id = post_ms(client, graph_id, 1)[1]
    total = wait_done(client, run_id, 1, started)
    run = client.get(f"/runs/{run_id}").raise_for_status().json()
    steps = client.get(f"/runs/{run_id}/steps").raise_for_status().json()["items"]
    waited = _seconds(steps[0]["started_at"]) - _seconds(run["created_at"])
    return Small(total, waited)


class Small(NamedTuple):
    """A one-item run: seconds to see it completed, and how many of them passed between its
    creation and its one task's start (the hop's time in the queue and the worker's reads)."""

    total: float
    waited: float


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stack-items", type=int, nargs="*", default=[START_ITEMS])
    parser.add_argument("--in-process-items", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3, help="10,000-item maps started")
    args = parser.parse_args(argv)
    wide_ms, one_ms, alone_s, beside_s, stack_done = on_the_stack(args.stack_items, args.repeat)
    print(
        f"POST /runs, map of {START_ITEMS:,} items: {wide_ms:8.1f} ms   "
        f"(one item: {one_ms:.1f} ms; ratio {wide_ms / one_ms:.2f}; target < 1,000 ms)"
    )
    print(
        f"a one-item run beside a {START_ITEMS:,}-item map: {beside_s.total:6.2f} s   "
        f"(alone: {alone_s.total:.2f} s; ratio {beside_s.total / alone_s.total:.1f})"
    )
    print(
        f"  of which before its task started:     {beside_s.waited:6.2f} s   "
        f"(alone: {alone_s.waited:.2f} s)"
    )
    in_process = {n: in_process_seconds(n) for n in args.in_process_items}
    for items, seconds in in_process.items():
        print(
            f"in process, map of {items:>7,} items: {seconds:8.2f} s   "
            f"({seconds / items * 1e6:.0f} us per item)"
        )
    for items, seconds in stack_done.items():
        reference = in_process.get(items) or in_process_seconds(items)
        print(
            f"local stack, map of {items:>6,} items: {seconds:8.2f} s   "
            f"(in process {reference:.2f} s; ratio {seconds / reference:.1f})"
        )
    print(f"map_start_post_ms {wide_ms:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
