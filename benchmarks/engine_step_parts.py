"""Where an in-process run's time goes: a run's fixed cost, and a step with and without the
runner around it (the figures behind ``benchmarks/engine_vs_langgraph.py``'s hopgraph rows).

Printed, each the best of ``--repeat`` batches (CPU time of this process, per run or step):

- ``one-step run``: ``InProcessRunner.run`` of a graph of one node (the run's fixed cost:
  its store, protocol and queue made, the run created, its one step, its end read back);
- ``chain step, runner``: a step of the benchmark's 100-node chain run by the runner, its
  fixed cost included (a hundredth of it per step);
- ``chain step, protocol``: the same chain's hops applied one after the other straight to
  :class:`~engine.protocol.HopProtocol` over the memory store and a FIFO queue: the
  protocol's own step (slot check, tool, close, commit, next hop), without the runner.

The last line is ``step_parts run_us R runner_step_us S protocol_step_us P``.

Run: ``.venv/bin/python benchmarks/engine_step_parts.py [--repeat 12]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_vs_langgraph import CHAIN_NODES, hopgraph_chain, hopgraph_run, toolkit

from engine.graph import Graph
from engine.memory import MemoryQueue, MemoryRunStore
from engine.ports import NullNotifier, RunRecord
from engine.protocol import HopProtocol, ProtocolConfig
from engine.validation import build_graph


def best_us(batch: Callable[[], float], repeat: int) -> float:
    """The best of ``repeat`` batches, each returning CPU seconds per unit, in us."""
    return min(batch() for _ in range(repeat)) * 1e6


def runner_batch(graph: Graph, steps: int, runs: int) -> Callable[[], float]:
    setup = hopgraph_run(graph, recorded=False, expected_steps=steps)

    def batch() -> float:
        prepared = [setup() for _ in range(runs)]
        start = time.process_time()
        for run in prepared:
            run()
        return (time.process_time() - start) / runs / steps

    return batch


def protocol_batch(graph: Graph, runs: int) -> Callable[[], float]:
    """Each run's hops applied straight to the protocol, in the order they are sent."""

    def one_run() -> float:
        store, queue = MemoryRunStore(), MemoryQueue()
        protocol = HopProtocol(store, queue, toolkit, NullNotifier(), time.time,
                               ProtocolConfig(None), lambda _graph_id: graph)  # fmt: skip
        header = RunRecord("r_1", "local", "running", {"x": 0, "i": 0}, CHAIN_NODES + 1, 1.0,
                           1.0, node=graph.entry)  # fmt: skip
        run, _ = store.create_run(header)
        protocol.start(run, recheck=False)
        delivered = 0
        start = time.process_time()
        while queue.hops:
            delivered += 1
            protocol.process(queue.hops.popleft(), f"d{delivered}")
        assert store.get_run("r_1").status == "completed"
        return (time.process_time() - start) / delivered

    def batch() -> float:
        return sum(one_run() for _ in range(runs)) / runs

    return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=12, help="batches (the best is kept)")
    args = parser.parse_args()
    one = build_graph({"entry": "n0", "nodes": {"n0": {"tool": "add_x"}}, "edges": {"n0": "END"}},
                      toolkit.names())  # fmt: skip
    chain = hopgraph_chain()
    for warm in (runner_batch(one, 1, 50), runner_batch(chain, CHAIN_NODES, 5)):
        warm()
    run_us = best_us(runner_batch(one, 1, 500), args.repeat)
    runner_us = best_us(runner_batch(chain, CHAIN_NODES, 100), args.repeat)
    protocol_us = best_us(protocol_batch(chain, 100), args.repeat)
    print(f"one-step run:            {run_us:8.2f} us")
    print(f"chain step, runner:      {runner_us:8.2f} us   (the run's fixed cost included)")
    print(f"chain step, protocol:    {protocol_us:8.2f} us   "
          f"({protocol_us / runner_us:.2f} of the runner's)")  # fmt: skip
    print(f"step_parts run_us {run_us:.1f} runner_step_us {runner_us:.2f} "
          f"protocol_step_us {protocol_us:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
