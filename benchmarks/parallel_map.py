"""A map over 100 items with an I/O-bound tool (a 50 ms wait): in one process, hopgraph's
in-process runner (``max_concurrency`` 20) against LangGraph's ``Send``, and as a durable run
on the local stack.

Printed, side by side, each the median of ``--repeat`` runs after a warm-up:

- ``one by one``: the 100 waits back to back (what a one-item-per-step loop costs);
- ``hopgraph``: the map node, its tasks on 20 threads at a time;
- ``langgraph``: the same map written with ``Send`` (LangGraph runs a superstep's tasks on
  its own thread pool), without a checkpointer;
- ``local stack``: the same map as a durable run on the local stack (``hopgraph dev`` started
  on free ports, as ``benchmarks/local_load.py`` starts it; SQS dispatch unless ``--dispatch
  lambda``; dev sign-in): a map node whose tool is ``engine.toolkits.basics``' ``wait``
  (``{"ms": 50}``), created and started over HTTP. Its time runs from the ``POST /runs`` to
  the first poll (every 50 ms) that finds the run completed; the run's log must show every
  item's task completed. One run after a warm-up run (``--local-runs`` for the median of
  more).

The last line is ``parallel_speedup S langgraph_ratio R local_stack_s T``: S is one by one /
hopgraph (target >= 10), R is hopgraph / LangGraph wall time (target <= 1.0), and T the
local stack's wall time in seconds (reported, no target; ``n/a`` with ``--no-local``).

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
from pathlib import Path
from typing import Annotated, Any, TypedDict

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the stack launcher lives with the end-to-end tests

from engine.runner import InProcessRunner  # noqa: E402
from engine.tools import ToolContext, Toolkit  # noqa: E402
from engine.validation import build_graph  # noqa: E402
from tests.e2e.stack import StackFailed, launch, run_to_end  # noqa: E402

try:
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Send
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("LangGraph is not installed: `.venv/bin/pip install -e '.[bench]'`")

CONCURRENCY = 20
SPEEDUP_TARGET = 10.0
RATIO_TARGET = 1.0
POLL_S = 0.05
"""How often the local stack's run is polled: the error of its wall time."""
LOCAL_DEADLINE_S = 600.0

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


def local_stack_graph(items: int, wait_ms: float) -> dict[str, Any]:
    """The same map for the local stack, whose toolkits are its config's: ``basics.wait``."""
    return {
        "name": f"parallel_map_{items}",
        "entry": "grade",
        "nodes": {
            "grade": {
                "tool": "wait",
                "settings": {"ms": wait_ms},
                "map": {"over": "docs", "as": "doc", "max_concurrency": CONCURRENCY},
            }
        },
        "edges": {"grade": "END"},
    }


def local_stack_run(client: httpx.Client, graph_id: str, items: int) -> float:
    """Seconds from starting one run to seeing it completed; its log is checked whole."""
    state = {"docs": list(range(items))}
    seconds, run = run_to_end(client, graph_id, state, POLL_S, LOCAL_DEADLINE_S)
    run_id = run["run_id"]
    log = client.get(f"/runs/{run_id}/steps").raise_for_status().json()["items"]
    done = [t for entry in log for t in entry.get("tasks", []) if t["status"] == "ok"]
    if sorted(t["index"] for t in done) != list(range(items)):
        raise RuntimeError(f"run {run_id} completed {len(done)} of {items} map items")
    return seconds


def local_stack_seconds(items: int, wait_ms: float, runs: int, dispatch: str) -> float:
    """The median wall time of ``runs`` runs of the map on a fresh local stack."""
    stack = launch(dispatch)
    try:
        # dev sign-in (the default): a request without a token acts as the dev user.
        with httpx.Client(base_url=stack.api, timeout=60.0) as client:
            graph = client.post("/graphs", json=local_stack_graph(items, wait_ms))
            graph_id = graph.raise_for_status().json()["graph_id"]
            local_stack_run(client, graph_id, items)  # warm-up: imports, connections, moto
            return statistics.median(local_stack_run(client, graph_id, items) for _ in range(runs))
    finally:
        try:
            stack.stop(timeout=30)
        except StackFailed as exc:  # the figure stands; the failed stop is reported
            print(f"warning: {str(exc).splitlines()[0]}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--wait-ms", type=float, default=50.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--local-runs", type=int, default=1, help="runs on the local stack")
    parser.add_argument("--no-local", action="store_true", help="skip the local stack")
    parser.add_argument("--dispatch", choices=["sqs", "lambda"], default="sqs", help="local stack")
    args = parser.parse_args()
    wait_s = args.wait_ms / 1000
    expected = [i * 2 for i in range(args.items)]
    serial = median_seconds(one_by_one(args.items, wait_s), expected, 1)
    ours = median_seconds(hopgraph_run(args.items, wait_s), expected, args.repeat)
    theirs = median_seconds(langgraph_run(args.items, wait_s), expected, args.repeat)
    local = None
    if not args.no_local:
        local = local_stack_seconds(args.items, args.wait_ms, args.local_runs, args.dispatch)
    print(f"map over {args.items} items, {args.wait_ms:g} ms I/O each, max_concurrency "
          f"{CONCURRENCY} (median of {args.repeat})")  # fmt: skip
    print(f"{'':<12}{'wall s':>10}{'vs one by one':>16}")
    rows = [("one by one", serial), ("hopgraph", ours), ("langgraph", theirs)]
    for name, seconds in rows + ([("local stack", local)] if local is not None else []):
        print(f"{name:<12}{seconds:>10.3f}{serial / seconds:>15.1f}x")
    speedup, ratio = serial / ours, ours / theirs
    met = {True: "met", False: "MISSED"}
    print(f"targets: speedup >= {SPEEDUP_TARGET:g} ({met[speedup >= SPEEDUP_TARGET]}), "
          f"hopgraph/langgraph <= {RATIO_TARGET:g} ({met[ratio <= RATIO_TARGET]})")  # fmt: skip
    local_s = "n/a" if local is None else f"{local:.2f}"
    print(f"parallel_speedup {speedup:.1f} langgraph_ratio {ratio:.2f} local_stack_s {local_s}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
