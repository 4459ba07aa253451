"""Wide maps on the local stack: one uncapped map of n items per run, for growing n.

Every item of an uncapped map may be its superstep's last, so each of its tasks asks whether
the superstep is complete. How that costs grows with n decides whether a map of thousands of
items is usable: above ``engine.protocol.COUNTED_FAN_IN_ABOVE`` readers the tasks keep a
count instead of each reading every task committed so far.

For each ``--items`` n, a run of the map (a ``fill`` of each item, microseconds of tool time)
is started over HTTP on a fresh local stack (``hopgraph dev`` on free ports, as
benchmarks/local_load.py starts it), and timed from the ``POST /runs`` to the first poll
(every 100 ms) that finds it completed; its final state must hold one result per item. The
reference, in the same invocation: the in-process runner on the same graph and input.

Printed: n, the local stack's seconds and milliseconds per item, the in-process seconds, and
the ratio of the two. The last line is ``wide_map_ms_per_item N1:T1 N2:T2 ...``.

Run: ``.venv/bin/python benchmarks/wide_map.py [--items 250 500 1000 2000]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the stack launcher lives with the end-to-end tests

from tests.e2e.stack import StackFailed, launch, run_to_end  # noqa: E402

POLL_S = 0.1
DEADLINE_S = 900.0
MAP = {
    "name": "wide_map",
    "entry": "item",
    "state": {"done": {"reducer": "append"}},
    "nodes": {
        "item": {
            "tool": "fill",
            "settings": {"key": "done", "template": "item $subject"},
            "map": {"over": "subjects", "as": "subject"},
        }
    },
    "edges": {"item": "END"},
}


def subjects(items: int) -> dict[str, Any]:
    return {"subjects": [f"s{i}" for i in range(items)]}


def stack_seconds(client: httpx.Client, graph_id: str, items: int) -> float:
    """Seconds from starting one run of the map to seeing it completed, every item done."""
    seconds, run = run_to_end(client, graph_id, subjects(items), POLL_S, DEADLINE_S)
    done = run["state"].get("done", [])
    if len(done) != items:
        raise RuntimeError(f"run {run['run_id']} completed {len(done)} of {items} items")
    return seconds


def in_process_seconds(items: int) -> float:
    from engine.runner import InProcessRunner
    from engine.tools import load_toolkits
    from engine.validation import build_graph

    tools = load_toolkits(["engine.toolkits.basics"])
    graph = build_graph(MAP, tools.names())
    started = time.perf_counter()
    result = InProcessRunner(tools).run(graph, subjects(items))
    if result.status != "completed" or len(result.state["done"]) != items:
        raise RuntimeError(f"in process: {result.status}, {len(result.state['done'])} items")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, nargs="+", default=[250, 500, 1000, 2000])
    args = parser.parse_args(argv)
    stack = launch()
    try:
        with httpx.Client(base_url=stack.api, timeout=120.0) as client:
            graph_id = client.post("/graphs", json=MAP).raise_for_status().json()["graph_id"]
            stack_seconds(client, graph_id, 10)  # warm-up: imports, connections, moto
            timed = [(n, stack_seconds(client, graph_id, n)) for n in args.items]
    finally:
        try:
            stack.stop(timeout=30)
        except StackFailed as exc:  # the figures stand; the failed stop is reported
            print(f"warning: {str(exc).splitlines()[0]}", file=sys.stderr)
    heads = ("items", "stack s", "ms/item", "in-process s", "stack/in-process")
    print("  ".join(f"{h:>{w}}" for h, w in zip(heads, (6, 8, 8, 12, 16), strict=True)))
    for items, seconds in timed:
        reference = in_process_seconds(items)
        print(f"{items:>6}  {seconds:>8.2f}  {seconds / items * 1000:>8.2f}  "
              f"{reference:>12.3f}  {seconds / reference:>16.0f}")  # fmt: skip
    figures = " ".join(f"{n}:{s / n * 1000:.2f}" for n, s in timed)
    print(f"wide_map_ms_per_item {figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
