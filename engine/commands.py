"""Commands a caller makes on a run's lifecycle, written once over the store's one
transition primitive (:meth:`engine.ports.RunStore.commit_step` with a run end).

Cancel is the first; resume, fork, redrive and state edits join it. Each is one conditional
write that appends its log entry into the run's next free slot and moves the run header in
the same transaction, so a command that crashes has either happened whole or not at all,
and a command racing a worker's close either wins the slot or looks again.
"""

from __future__ import annotations

from engine.errors import ConflictError, StepConflict, TransientStoreError
from engine.ports import RunEnd, RunRecord, RunStore, StepRecord

CANCEL_ATTEMPTS = 20
"""Tries to take the next free slot while workers keep filling it (a fast chain)."""


def cancel_step(run: RunRecord, at: float, reason: str) -> StepRecord:
    """The entry a cancellation writes into the run's next free slot."""
    return StepRecord(
        run_id=run.run_id,
        seq=run.steps,
        node=run.node or "",
        tool="",
        status="cancelled",
        updates={},
        state=run.state,
        next_node=None,
        started_at=at,
        duration_ms=0.0,
        error=reason,
        run_status="cancelled",
        graph_id=run.graph_id,
        max_steps=run.max_steps,
    )


def cancel_run(
    store: RunStore, run_id: str, at: float, reason: str, attempts: int = CANCEL_ATTEMPTS
) -> RunRecord:
    """Take the run's next free slot with a ``cancelled`` step and mark the run cancelled,
    atomically, so that no task starts after it and its superstep never closes (a task
    already running may still write its own record). RunNotFound for an unknown run;
    ConflictError if it is already final."""
    for _ in range(attempts):
        run = store.get_run(run_id)
        if run.is_final:
            raise ConflictError(f"run {run_id!r} is already {run.status}")
        step = cancel_step(run, at, reason)
        try:
            # a paused run is cancelled as a running one is (engine/lifecycle.py)
            store.commit_step(step, RunEnd("cancelled", reason, from_status=run.status))
        except StepConflict:
            continue  # a worker committed into the slot, or the run ended: look again
        return store.get_run(run_id)
    raise TransientStoreError(f"run {run_id!r} kept advancing while being cancelled")
