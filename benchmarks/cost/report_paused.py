"""What a run that waits for a person costs while it waits (target: no request), and what its
answer costs: runs of an approval graph (engine/pauses.py) through the real worker on moto,
paused, then an hour of the sweeper's passes (one a minute), then answered.

The sweeper lists running runs each minute whether or not any run is paused: its listing is
measured first, with no run at all, and only what the paused runs add to it is theirs. With
``Dispatch=lambda`` the sweeper also looks at paused runs (a carrier that cannot hold a hop
needs it to keep their deadlines): one query per paused run per pass, shown as it is.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

from benchmarks.cost.scenarios import Deployment, QueueWatch, deployment, drive

APPROVAL = {
    "name": "approval",
    "entry": "draft",
    "nodes": {
        "draft": {"tool": "increment", "settings": {"key": "count"}},
        "approve": {"interrupt": {"prompt": "Ship it?", "key": "approved"}},
        "ship": {"tool": "record_visit"},
    },
    "edges": {"draft": "approve", "approve": "ship", "ship": "END"},
}
SWEEPS = 60
"""An hour of waiting: the sweeper runs once a minute."""


@dataclass
class PausedRow:
    mode: str
    runs: int
    sweeper_alone: int
    """Requests of the sweeper's passes with no run at all (its listing)."""
    while_paused: int
    """Requests of the same passes while the runs waited."""
    answered: int
    """Requests from the answers to the runs' ends (the resumes, and the hops they sent)."""

    @property
    def waiting_per_run(self) -> float:
        return (self.while_paused - self.sweeper_alone) / self.runs


def paused_row(mode: str, runs: int) -> PausedRow:
    with (
        deployment(mode, "engine.toolkits.basics") as deployed,
        contextlib.redirect_stdout(
            io.StringIO()  # the handlers' EMF lines
        ),
    ):
        svc, meter = deployed.service, deployed.meter
        graph_id = svc.create_graph(APPROVAL)[0].graph_id
        alone = _sweeps(deployed)
        run_ids = [svc.start_run(graph_id, {})[0].run_id for _ in range(runs)]
        _deliver(deployed, mode, runs)
        statuses = {svc.store.get_run(r).status for r in run_ids}
        assert statuses == {"paused"}, f"paused {mode}: {statuses}"
        waiting = _sweeps(deployed)
        meter.requests.clear()
        for run_id in run_ids:
            svc.resume_run(run_id, True)
        _deliver(deployed, mode, runs)
        answered = sum(meter.requests.values())
        statuses = {svc.store.get_run(r).status for r in run_ids}
        assert statuses == {"completed"}, f"resumed {mode}: {statuses}"
        return PausedRow(mode, runs, alone, waiting, answered)


def _sweeps(deployed: Deployment) -> int:
    """The requests of an hour of the sweeper's passes."""
    deployed.meter.requests.clear()
    for _ in range(SWEEPS):
        deployed.service.sweep()
    return sum(deployed.meter.requests.values())


def _deliver(deployed: Deployment, mode: str, runs: int) -> None:
    """Every hop in flight, to the worker, until none is left."""
    from functions.aws import clients
    from functions.worker.handler import handler
    from infra.stack.event_source import SqsEventSource
    from infra.stack.lambda_context import LambdaContext

    url = deployed.urls["StepQueue"]
    source = SqsEventSource(clients.client("sqs"), url, None, batch_size=10, failed_visibility=0)
    queue = QueueWatch(deployed.session.client("sqs"), url, f"paused {mode}", runs)
    drive(mode, deployed.meter, handler, source, LambdaContext, queue)


def report_paused(rows: list[PausedRow]) -> None:
    print(f"\nA run waiting for a person: {SWEEPS} sweeper passes (an hour), then answered")
    print(f"{'dispatch':<9} {'runs':>5} {'sweeper alone':>14} {'with paused':>12} "
          f"{'per paused run':>15} {'target':>7} {'answer, per run':>16}")  # fmt: skip
    for row in rows:
        print(f"{row.mode:<9} {row.runs:>5} {row.sweeper_alone:>14} {row.while_paused:>12} "
              f"{row.waiting_per_run:>15.2f} {0:>7} {row.answered / row.runs:>16.2f}")  # fmt: skip
