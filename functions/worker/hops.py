"""The carrier-independent half of the worker: apply one hop through the run service.

A hop reaches the worker by one of two carriers, each in its own module because they count
deliveries differently: :mod:`functions.worker.sqs` (the step queue; the attempt is SQS's
receive count) and :mod:`functions.worker.self_invoke` (``Dispatch=lambda``; the worker
counts attempts itself). Both hand the hop, its delivery id and its attempt to
:func:`apply_hop`, which is the same for either: it processes the hop, logs a failure at the
level its cause deserves, and, when the failed delivery is the last one allowed (attempt
``HOPGRAPH_STEP_MAX_RECEIVES``) or can never succeed, first marks the run failed
(:func:`dead_letter`), so that the run is not left running when the hop lands in the DLQ.

Metrics (EMF): StepsCompleted, StepDuration (ms), RunsCompleted, RunsFailed, HopsDuplicate,
HopsRecovered, TaskAttemptsFailed (a retried task's attempt failed; its next one is
scheduled), FoldPages (a page of a wide superstep's close folded: engine/fold.py),
MalformedMessages and HopsFailed (a delivery that failed: retried, or dead-lettered on its
last attempt); the self-invoke carrier adds HopsDeadLettered. Every log
line of a hop carries ``run_id`` and ``seq`` (the carriers set them).
"""

from __future__ import annotations

import json
import time
from typing import Any

from engine.errors import InvalidInputError, RetryLater, TransientStoreError, transport_of
from engine.ports import Hop
from engine.protocol import HopResult
from engine.service import RunService
from functions import runtime
from functions.observability import count, logger, milliseconds
from functions.settings import get_settings


class MalformedHop(Exception):
    """A message that is not a hop: it can never succeed and is left to reach the DLQ."""


def parse_hop(body: Any) -> Hop:
    """The hop in an SQS body (JSON text) or a self-invocation payload (a dict)."""
    if isinstance(body, str | bytes):
        try:
            body = json.loads(body)
        except ValueError as exc:
            raise MalformedHop(f"body is not JSON: {exc}") from None
    try:
        return Hop.from_dict(body)
    except InvalidInputError as exc:
        raise MalformedHop(str(exc)) from None


def remaining_s(context: Any) -> float | None:
    """The seconds Lambda leaves this invocation (``None`` for a context that cannot say):
    a tool is started only if it can finish and commit in them (engine/deadlines.py)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    try:
        return float(remaining()) / 1000
    except (TypeError, ValueError):
        return None


def malformed(reason: str, **where: Any) -> None:
    logger.error("malformed hop message", extra={"reason": reason, **where})
    count("MalformedMessages")


def apply_hop(hop: Hop, delivery_id: str, attempt: int) -> HopResult:
    """Process ``hop``; on a failure of its last allowed delivery, fail its run, then raise.

    The error's queue disposition (the table in :mod:`engine.errors`) decides: ``drop``
    acknowledges the hop (its work is done or moot), ``park`` fails the run at once (every
    delivery would fail the same way; the redeliveries then find the slot taken and stop),
    ``retry`` fails only this delivery until the last."""
    svc = runtime.service()
    started = time.perf_counter()
    try:
        result = svc.process_hop(hop, delivery_id, attempt)
    except Exception as exc:
        disposition = transport_of(exc).disposition
        if disposition == "drop":
            logger.info("hop dropped", extra={"error": f"{type(exc).__name__}: {exc}"})
            return "stale"
        permanent = disposition == "park"
        last = permanent or attempt >= get_settings().step_max_receives
        _log_failure(exc, attempt, last)
        count("HopsFailed")  # a failed delivery: retried, or dead-lettered if last
        if last:
            dead_letter(svc, hop, exc, attempt, permanent=permanent)
        raise
    _record(svc, hop, result, (time.perf_counter() - started) * 1000, attempt)
    return result


def _log_failure(exc: Exception, attempt: int, last: bool) -> None:
    extra = {"attempt": attempt, "last_attempt": last, "error": f"{type(exc).__name__}: {exc}"}
    if isinstance(exc, RetryLater):
        logger.info("hop arrived early; retried later", extra=extra)
    elif isinstance(exc, TransientStoreError):
        logger.warning("store throttled or unavailable; hop retried", extra=extra)
    else:
        logger.exception("hop failed", extra=extra)


def dead_letter(
    svc: RunService, hop: Hop, exc: Exception, attempt: int, *, permanent: bool = False
) -> None:
    """Mark the run failed because this hop is about to be dead-lettered (or, ``permanent``,
    can never succeed). Best effort: the failure to do so is logged, and the hop still goes
    to the DLQ."""
    reason = (
        f"step {hop.seq} (node {hop.node!r}) could not be processed after {attempt} "
        f"deliveries and was moved to the dead-letter queue: {type(exc).__name__}: {exc}"
    )
    if permanent:
        error = f"{type(exc).__name__}: {exc}"
        reason = f"step {hop.seq} (node {hop.node!r}) cannot be processed: {error}"
    try:
        ended = svc.fail_hop(hop, reason, by_worker=True)
    except Exception:
        logger.exception("could not mark the run failed before dead-lettering its hop")
        return
    if ended:
        count("RunsFailed")
        logger.error("run failed: hop dead-lettered", extra={"reason": reason})


def _record(svc: RunService, hop: Hop, result: HopResult, ms: float, attempt: int) -> None:
    logger.info("hop applied", extra={"result": result, "node": hop.node, "attempt": attempt})
    if result in ("committed", "finished"):
        count("StepsCompleted")
        milliseconds("StepDuration", ms)
    if result == "finished":
        _record_run_end(svc, hop)
    elif result == "duplicate":
        count("HopsDuplicate")
    elif result == "recovered":
        count("HopsRecovered")
    elif result == "retrying":
        count("TaskAttemptsFailed")  # a retried task's attempt failed; the next is scheduled
    elif result == "folded":
        count("FoldPages")  # a page of a wide superstep's close (engine/fold.py)


def _record_run_end(svc: RunService, hop: Hop) -> None:
    # process_hop says "finished" but not how; the step just committed does (one strongly
    # consistent read per run, not per step). A failed read costs only the metric.
    try:
        step = svc.store.get_step(hop.run_id, hop.seq)
    except Exception:
        logger.warning("run ended; could not read how", exc_info=True)
        return
    if step is None:
        return
    if step.run_status == "completed":
        count("RunsCompleted")
        logger.info("run completed", extra={"steps": hop.seq + 1})
    else:
        count("RunsFailed")
        logger.info("run ended", extra={"status": step.run_status, "reason": step.error})
