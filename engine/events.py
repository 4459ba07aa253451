"""The events subscribers receive: one per committed step, one per run status change."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from engine.ports import RunRecord, RunStatus, StepRecord


def iso(ts: float) -> str:
    """Epoch seconds as an ISO 8601 UTC timestamp with milliseconds."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def step_event(step: StepRecord, ts: float) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "step",
        "run_id": step.run_id,
        "ts": iso(ts),
        "seq": step.seq,
        "node": step.node,
        "tool": step.tool,
        "status": step.status,
        "updates": step.updates,
        "duration_ms": step.duration_ms,
        "next": step.next_node,
    }
    if step.error is not None:
        event["error"] = step.error
    return event


def run_event(
    run_id: str,
    status: RunStatus,
    ts: float,
    *,
    state: dict[str, Any] | None = None,
    reason: str | None = None,
    steps: int | None = None,
) -> dict[str, Any]:
    """A run status change; the final state rides on ``completed``, the reason on failure."""
    event: dict[str, Any] = {"type": "run", "run_id": run_id, "ts": iso(ts), "status": status}
    if steps is not None:
        event["steps"] = steps
    if state is not None:
        event["state"] = state
    if reason is not None:
        event["reason"] = reason
    return event


def run_status_event(run: RunRecord, ts: float) -> dict[str, Any]:
    """The event that tells a late subscriber where a run stands now."""
    return run_event(
        run.run_id,
        run.status,
        ts,
        state=run.state if run.status == "completed" else None,
        reason=run.error,
        steps=run.steps,
    )
