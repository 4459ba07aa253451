"""A map over 100 items with an I/O-bound tool (a 50 ms wait), in one process:
hopgraph's in-process runner (``max_concurrency`` 20) against LangGraph's ``Send``.

Printed, side by side, each the median of ``--repeat`` runs after a warm-up:

- ``one by one``: the 100 waits back to back (what a one-item-per-step loop costs);
- ``hopgraph``: the map node, its tasks on 20 threads at a time;
- ``langgraph``: the same map written with ``Send`` (LangGraph runs a superstep's tasks on
  its own thread pool), without a checkpointer.

The last line is ``parallel_speedup S langgraph_ratio R local_stack_s T``: S is one by one /
hopgraph (target >= 10), R is hopgraph / LangGraph wall time (target <= 1.0), and T the same
map on the local stack, which is ``n/a`` while the durable protocol runs chains only (the
service refuses parallel graphs until then).

Run: ``.venv/bin/pip install -e '.[bench]'`` once, then
``.venv/bin/python benchmarks/parallel_map.py [--items 100] [--wait-ms 50] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import operator
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypedDict

from engine.runner import InProcessRunner
from engine.tools import ToolContext, Toolkit
from engine.validation import build_graph

try:
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Send
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("LangGraph is not installed: `.venv/bin/pip install -e '.[bench]'`")

CONCURRENCY = 20
SPEEDUP_TARGET = 10.0
RATIO_TARGET = 1.0

tools = Toolkit("parallel-map-bench")


def io_call(item: int, wait_s: float) -> int:
    """Stands in for a network call: it waits, then answers."""
    time.sleep(wait_s)
    return item * 2


@tools.tool
def grade(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    return {"grades": [io_call(state["doc"], float(ctx.settings["wait_s"]))]}


def hopgraph_run(items: int, wait_s: float) -> Callable[[], list[int]]:
    graph = build_graph(
        {
            "entry": "grade",
            "state": {"grades": {"reducer": "append"}},
            "nodes": {
                "grade": {
                    "tool": "grade",
                    "settings": {"wait_s": wait_s},
                    "map": {"over": "docs", "as": "doc", "max_concurrency": CONCURRENCY},
                }
            },
            "edges": {"grade": "END"},
        },
        tools.names(),
    )
    runner = InProcessRunner(tools)
    return lambda: list(runner.run(graph, {"docs": list(range(items))}).state["grades"])


class MapState(TypedDict):
    docs: list[int]
    grades: Annotated[list[int], operator.add]


def langgraph_run(items: int, wait_s: float) -> Callable[[], list[int]]:
    builder = StateGraph(MapState)
    builder.add_node("grade", lambda s: {"grades": [io_call(s["doc"], wait_s)]})
    builder.add_conditional_edges(START, lambda s: [Send("grade", {"doc": d}) for d in s["docs"]])
    builder.add_edge("grade", END)
    graph = builder.compile()
    config = {"max_concurrency": CONCURRENCY}
    return lambda: list(graph.invoke({"docs": list(range(items)), "grades": []}, config)["grades"])


def one_by_one(items: int, wait_s: float) -> Callable[[], list[int]]:
    return lambda: [io_call(i, wait_s) for i in range(items)]


def median_seconds(run: Callable[[], list[int]], expected: list[int], repeat: int) -> float:
    assert run() == expected, "the run did not grade every item in order"  # and warms up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--wait-ms", type=float, default=50.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    wait_s = args.wait_ms / 1000
    expected = [i * 2 for i in range(args.items)]
    serial = median_seconds(one_by_one(args.items, wait_s), expected, 1)
    ours = median_seconds(hopgraph_run(args.items, wait_s), expected, args.repeat)
    theirs = median_seconds(langgraph_run(args.items, wait_s), expected, args.repeat)
    print(f"map over {args.items} items, {args.wait_ms:g} ms I/O each, max_concurrency "
          f"{CONCURRENCY} (median of {args.repeat})")  # fmt: skip
    print(f"{'':<12}{'wall s':>10}{'vs one by one':>16}")
    for name, seconds in (("one by one", serial), ("hopgraph", ours), ("langgraph", theirs)):
        print(f"{name:<12}{seconds:>10.3f}{serial / seconds:>15.1f}x")
    speedup, ratio = serial / ours, ours / theirs
    met = {True: "met", False: "MISSED"}
    print(f"targets: speedup >= {SPEEDUP_TARGET:g} ({met[speedup >= SPEEDUP_TARGET]}), "
          f"hopgraph/langgraph <= {RATIO_TARGET:g} ({met[ratio <= RATIO_TARGET]})")  # fmt: skip
    print(f"parallel_speedup {speedup:.1f} langgraph_ratio {ratio:.2f} local_stack_s n/a")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
