"""hopgraph's in-process step loop against LangGraph's, on the same graphs, in one process.

Graphs (trivial nodes, so the figure is the engine's own overhead per step):

- ``chain``: 100 nodes in a line, each ``x += 1``;
- ``loop``: two nodes in a loop, 1,000 iterations (2,000 steps), ended by the condition
  ``i >= 1000`` (hopgraph: a branch; LangGraph: ``add_conditional_edges`` with the same test
  as a Python function).

Modes: ``bare``: LangGraph without checkpointer, which records nothing; hopgraph with
``store=None``, a fresh memory store per run (its protocol commits every step: it has no mode
that records nothing). ``recorded``: every step kept across runs (hopgraph one
``MemoryRunStore``; LangGraph ``InMemorySaver`` with a thread id). Per-step time is a whole
run divided by its steps, the median of several runs after a warm-up. The last line is
``ratio R``: the worst hopgraph / LangGraph per-step ratio.

Run: ``make bench`` (installs the ``bench`` extra) or ``.venv/bin/python
benchmarks/engine_vs_langgraph.py [--repeat N] [--clock cpu]`` (``cpu``: time each run by
this process's CPU time rather than the wall clock, for a machine other work shares).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
import timeit
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from engine.conditions import compile_condition
from engine.graph import Graph
from engine.memory import MemoryRunStore
from engine.runner import InProcessRunner
from engine.tools import ToolContext, Toolkit
from engine.validation import build_graph

try:
    from langgraph.graph import END, START, StateGraph
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("LangGraph is not installed: `.venv/bin/pip install -e '.[bench]'` (or `make bench`)")
try:
    from langgraph.checkpoint.memory import InMemorySaver
except ImportError:  # langgraph-checkpoint before 2.0 named it MemorySaver
    from langgraph.checkpoint.memory import MemorySaver as InMemorySaver

CHAIN_NODES = 100
LOOP_ITERATIONS = 1_000
CONDITION = "quality_score >= 7 or iteration >= 5"
CONDITION_TARGET_US = 2.0
RATIO_TARGET = 0.10


Setup = Callable[[], Callable[[], int]]


class BenchState(TypedDict):
    x: int
    i: int


# -- hopgraph ----------------------------------------------------------------------------------
toolkit = Toolkit("bench")


@toolkit.tool
def add_x(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """x += 1"""
    return {"x": state["x"] + 1}


@toolkit.tool
def add_i(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """i += 1"""
    return {"i": state["i"] + 1}


def hopgraph_chain() -> Graph:
    names = [f"n{k}" for k in range(CHAIN_NODES)]
    edges = dict(zip(names, [*names[1:], "END"], strict=True))
    doc = {"entry": names[0], "nodes": {n: {"tool": "add_x"} for n in names}, "edges": edges}
    return build_graph(doc, toolkit.names())


def hopgraph_loop() -> Graph:
    doc = {
        "entry": "count",
        "nodes": {"count": {"tool": "add_i"}, "work": {"tool": "add_x"}},
        "edges": {"count": "work"},
        "branches": {
            "work": {
                "cases": [{"when": f"i >= {LOOP_ITERATIONS}", "to": "END"}],
                "default": "count",
            }
        },
    }
    return build_graph(doc, toolkit.names())


def hopgraph_run(graph: Graph, recorded: bool, expected_steps: int) -> Setup:
    def setup() -> Callable[[], int]:
        # A fresh store per run, as LangGraph gets a fresh thread: neither grows across runs.
        runner = InProcessRunner(toolkit, store=MemoryRunStore() if recorded else None)

        def run() -> int:
            result = runner.run(graph, {"x": 0, "i": 0}, max_steps=expected_steps + 1)
            assert result.status == "completed", result.error
            return result.steps

        return run

    return setup


# -- LangGraph ---------------------------------------------------------------------------------
def lg_add_x(state: BenchState) -> dict[str, Any]:
    return {"x": state["x"] + 1}


def lg_add_i(state: BenchState) -> dict[str, Any]:
    return {"i": state["i"] + 1}


def lg_route(state: BenchState) -> str:
    return END if state["i"] >= LOOP_ITERATIONS else "count"


def langgraph_chain(recorded: bool) -> Any:
    builder = StateGraph(BenchState)
    names = [f"n{k}" for k in range(CHAIN_NODES)]
    for name in names:
        builder.add_node(name, lg_add_x)
    builder.add_edge(START, names[0])
    for a, b in itertools.pairwise(names):
        builder.add_edge(a, b)
    builder.add_edge(names[-1], END)
    return builder.compile(checkpointer=InMemorySaver() if recorded else None)


def langgraph_loop(recorded: bool) -> Any:
    builder = StateGraph(BenchState)
    builder.add_node("count", lg_add_i)
    builder.add_node("work", lg_add_x)
    builder.add_edge(START, "count")
    builder.add_edge("count", "work")
    builder.add_conditional_edges("work", lg_route, ["count", END])
    return builder.compile(checkpointer=InMemorySaver() if recorded else None)


def langgraph_run(build: Callable[[bool], Any], recorded: bool, expected_steps: int) -> Setup:
    graph = build(recorded)  # compiled once, outside the timings
    threads = itertools.count()

    def setup() -> Callable[[], int]:
        config: dict[str, Any] = {"recursion_limit": expected_steps + 10}
        if recorded:  # a new thread per run: each run starts from its input, not a checkpoint
            config["configurable"] = {"thread_id": f"t{next(threads)}"}

        def run() -> int:
            final = graph.invoke({"x": 0, "i": 0}, config=config)
            assert final["x"] + final["i"] == expected_steps, final
            return expected_steps

        return run

    return setup


# -- measuring ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    graph: str
    mode: str
    hopgraph_us: float
    langgraph_us: float

    @property
    def ratio(self) -> float:
        return self.hopgraph_us / self.langgraph_us


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
"""``wall``: elapsed time (the default). ``cpu``: the CPU time of this process (all its
threads), which other processes sharing the machine inflate far less: on a loaded machine
its ratios are the steadier ones."""


def per_step_us(setup: Setup, repeat: int, warmup: int = 2, clock: str = "wall") -> float:
    """Median over ``repeat`` runs of one run's time divided by its steps, after warm-up.

    ``setup`` (untimed) prepares one run; only the run itself is timed."""
    now = CLOCKS[clock]
    for _ in range(warmup):
        setup()()
    samples = []
    for _ in range(repeat):
        run = setup()
        start = now()
        steps = run()
        samples.append((now() - start) / steps * 1e6)
    return statistics.median(samples)


def condition_us() -> float:
    """One evaluation of the reference condition, best of 5 timeit repeats."""
    condition = compile_condition(CONDITION)
    state = {"quality_score": 6, "iteration": 3}  # both comparisons run: the slow path
    timer = timeit.Timer("condition(state)", globals={"condition": condition, "state": state})
    number, _ = timer.autorange()
    return min(timer.repeat(repeat=5, number=number)) / number * 1e6


def measure(repeat: int, clock: str = "wall") -> list[Row]:
    chain_steps, loop_steps = CHAIN_NODES, 2 * LOOP_ITERATIONS
    graphs = [
        ("chain-100", hopgraph_chain(), langgraph_chain, chain_steps, repeat * 4),
        ("loop-1000", hopgraph_loop(), langgraph_loop, loop_steps, repeat),
    ]
    rows = []
    for name, hop_graph, lg_build, steps, reps in graphs:
        for mode, recorded in (("bare", False), ("recorded", True)):
            hop = per_step_us(hopgraph_run(hop_graph, recorded, steps), reps, clock=clock)
            lang = per_step_us(langgraph_run(lg_build, recorded, steps), reps, clock=clock)
            rows.append(Row(name, mode, hop, lang))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs per measurement (median)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall: elapsed time; cpu: this process's CPU time")  # fmt: skip
    args = parser.parse_args()
    rows = measure(args.repeat, args.clock)
    print(
        f"{'graph':<10} {'mode':<9} {'hopgraph us/step':>17} {'langgraph us/step':>18} {'ratio':>7}"
    )
    for r in rows:
        print(
            f"{r.graph:<10} {r.mode:<9} {r.hopgraph_us:>17.2f} {r.langgraph_us:>18.2f} "
            f"{r.ratio:>7.3f}"
        )
    cond = condition_us()
    verdict = "ok" if cond <= CONDITION_TARGET_US else "MISSED"
    print(
        f"condition {CONDITION!r}: {cond:.3f} us per evaluation "
        f"(target {CONDITION_TARGET_US} us: {verdict})"
    )
    worst = max(r.ratio for r in rows)
    print(f"target ratio <= {RATIO_TARGET:.2f}: {'ok' if worst <= RATIO_TARGET else 'MISSED'}")
    print(f"ratio {worst:.2f}")


if __name__ == "__main__":
    main()
