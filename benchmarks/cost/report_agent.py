"""The research agent's steps."""

from __future__ import annotations

import contextlib
import io

from benchmarks.cost.report_tasks import report_tasks
from benchmarks.cost.scenarios import AGENT, run_scenario


def report_agent(runs: int) -> None:
    """An agent's step (a model call, or one tool call) in requests and USD per million, the
    model's own price apart: its tokens are totalled per run by GET /runs/{id}."""
    with contextlib.redirect_stdout(io.StringIO()):
        results = [run_scenario(mode, 1, runs, "agent") for mode in ("sqs", "lambda")]
    report_tasks(results)
    calls = len(AGENT["nodes"]["researcher"]["agent"]["responses"])
    supersteps = results[0].steps // runs
    print(f"\nper run of the research agent: {calls} model calls in {supersteps} supersteps; "
          "the model's price comes on top, per token (HOPGRAPH_MODEL_PRICES)")  # fmt: skip
    for r in results:
        print(f"agent_usd_per_million_tasks {r.mode} {r.usd_per_million_tasks:.2f} "
              f"requests_per_task {r.requests / r.tasks:.2f}")  # fmt: skip
