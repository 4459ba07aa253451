"""The events subscribers receive: one per committed step, one per run status change."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from engine.blobs import summary
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
        "updates": summary(step.updates, step.run_id),
        "duration_ms": step.duration_ms,
        "next": list(step.next_nodes) if step.next_nodes else step.next_node,
    }
    if step.tasks:  # a superstep of several tasks: each one named, with how it went
        event["tasks"] = [dict(t) for t in step.tasks]
    if step.tasks_total:  # a wide one: only some are named (each has its own record)
        event["tasks_total"] = step.tasks_total
    if step.error is not None:
        event["error"] = step.error
    if step.source:  # an entry a command wrote (a fork's first, a redrive, an edit)
        event["source"] = step.source
    return event


def logged_step_event(step: StepRecord) -> dict[str, Any]:
    """The event of a step read back from the log (a replay, a missed step posted again),
    stamped with the time its tool ended."""
    return step_event(step, step.started_at + step.duration_ms / 1000)


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
        event["state"] = summary(state, run_id)
    if reason is not None:
        event["reason"] = reason
    return event


def run_status_event(run: RunRecord, ts: float) -> dict[str, Any]:
    """The event that tells a late subscriber where a run stands now (and, for a fork, the
    run and superstep it was forked from)."""
    event = run_event(
        run.run_id,
        run.status,
        ts,
        state=run.state if run.status == "completed" else None,
        reason=run.error,
        steps=run.steps,
    )
    if run.parent_run_id is not None:
        event["parent"] = {"run_id": run.parent_run_id, "seq": run.parent_seq}
    return event


# -- message size ---------------------------------------------------------------------------
MESSAGE_LIMIT = 128 * 1024
"""API Gateway's WebSocket message quota, in bytes: a larger PostToConnection is refused with
413 PayloadTooLargeException, so every event and reply is fitted to it before it is sent."""
SUMMARIZE_OVER = 1024
"""An ``updates``/``state`` value encoded larger than this may be replaced by its summary."""
TEXT_LIMIT = 2_000
"""Free text (a tool's error, a failure reason, an error message) is cut to this many chars."""
_LARGE_FIELDS = ("updates", "state")
_FREE_TEXT = ("error", "reason", "message")
_SKELETON = (
    "type", "run_id", "ts", "seq", "node", "tool", "status", "steps", "next", "action", "message",
    "reason", "error",
)  # fmt: skip
_SKELETON_TEXT = 256


def encode(value: Any) -> bytes:
    """An event as the bytes of one WebSocket text message (compact JSON, UTF-8)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def fetch_path(event: dict[str, Any]) -> str | None:
    """Where the HTTP API serves what a cut-down event left out (None: no run to point at)."""
    run_id, seq = event.get("run_id"), event.get("seq")
    if not isinstance(run_id, str) or len(run_id) > _SKELETON_TEXT:
        return None
    if event.get("type") == "step" and isinstance(seq, int):
        return f"/runs/{run_id}/steps?after={seq - 1}&limit=1"
    return f"/runs/{run_id}"


def fit(event: dict[str, Any], limit: int = MESSAGE_LIMIT) -> dict[str, Any]:
    """``event`` itself if it encodes within ``limit`` bytes, else a copy cut down to fit.

    Cuts as little as it can, in this order: the largest values of ``updates``/``state``
    become ``{"truncated": true, "size": n}`` (small values stay readable); then long free
    text is shortened; then those fields are summarized whole; and if that is still not
    enough, only the event's short identifying fields are kept. A cut event lists the
    top-level fields it changed in ``truncated`` and where to read them in full in ``fetch``
    (``GET /runs/{id}``, or the one step). The original is never modified."""
    if len(encode(event)) <= limit:
        return event
    cut = dict(event)
    truncated: list[str] = []
    for shrink in (_summarize_largest_values, _shorten_texts, _summarize_whole_fields):
        shrink(cut, truncated, _excess(cut, truncated, event, limit))
        if _excess(cut, truncated, event, limit) <= 0:
            return _finished(cut, truncated, event)
    return _skeleton(event)


def _finished(
    cut: dict[str, Any], truncated: list[str], original: dict[str, Any]
) -> dict[str, Any]:
    done = {**cut, "truncated": truncated}
    fetch = fetch_path(original)
    if fetch is not None:
        done["fetch"] = fetch
    return done


def _excess(cut: dict[str, Any], truncated: list[str], original: dict[str, Any], limit: int) -> int:
    return len(encode(_finished(cut, truncated, original))) - limit


def _summary(size: int) -> dict[str, Any]:
    return {"truncated": True, "size": size}


def _summarize_largest_values(cut: dict[str, Any], truncated: list[str], excess: int) -> None:
    """Replace the largest values of the large fields by summaries until ``excess`` is saved.

    Sizes are measured once per value: re-encoding the event after each replacement would
    make a state of many keys quadratic."""
    candidates: list[tuple[int, str, Any]] = []
    for name in _LARGE_FIELDS:
        value = cut.get(name)
        if isinstance(value, dict):
            for key, item in value.items():
                size = len(encode(item))
                if size > SUMMARIZE_OVER:
                    candidates.append((size, name, key))
    saved = 0
    for size, name, key in sorted(candidates, key=lambda c: c[0], reverse=True):
        if saved >= excess:
            return
        if name not in truncated:
            cut[name] = dict(cut[name])
            truncated.append(name)
        cut[name][key] = _summary(size)
        saved += size - len(encode(cut[name][key]))


def _summarize_whole_fields(cut: dict[str, Any], truncated: list[str], excess: int) -> None:
    for name in _LARGE_FIELDS:
        size = len(encode(cut.get(name)))
        if size > SUMMARIZE_OVER:
            cut[name] = _summary(size)
            if name not in truncated:
                truncated.append(name)


def _shorten_texts(cut: dict[str, Any], truncated: list[str], excess: int) -> None:
    for name in _FREE_TEXT:
        value = cut.get(name)
        if isinstance(value, str) and len(value) > TEXT_LIMIT:
            cut[name] = value[:TEXT_LIMIT] + "... (truncated)"
            truncated.append(name)


def _skeleton(event: dict[str, Any]) -> dict[str, Any]:
    """The event's short identifying fields alone: always small, whatever the event held."""
    kept = {
        name: event[name] for name in _SKELETON if name in event and _is_short_scalar(event[name])
    }
    return _finished(kept, sorted(set(event) - set(kept)), event)


def _is_short_scalar(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= _SKELETON_TEXT
    return value is None or isinstance(value, int | float | bool)
