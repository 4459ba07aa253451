"""The worker's logic: one hop per SQS record or per self-invocation, through the run service.

What a failure does depends on how the hop travelled, because the two carriers count
deliveries differently:

SQS (the step queue, ``maxReceiveCount`` = ``HOPGRAPH_STEP_MAX_RECEIVES``)
    The delivery id is the SQS message id (stable across redeliveries) and the attempt is
    ``ApproximateReceiveCount``. A failed record is reported in ``batchItemFailures``; SQS
    redelivers it after the visibility timeout. On the last allowed receive the worker first
    marks the run failed (``fail_hop``), so that the run is not left running when SQS moves
    the message to the DLQ on its next receive.

Self-invocation (``Dispatch=lambda``, event ``{"hopgraph": "hop", "hop": {...}}``)
    Lambda's asynchronous retries keep the request id, which is therefore the delivery id of
    a first delivery, but they count nothing the handler can see. So the worker counts
    itself: a failed hop is re-invoked with ``attempt + 1`` and the *same* ``delivery_id`` in
    the payload (the id is what lets a redelivery recover a step its earlier attempt committed
    but never dispatched the successor of), after a short backoff. The invocation that fails
    on the last attempt marks the run failed and re-invokes once more with
    ``attempt = limit + 1``; that invocation only raises :class:`HopDeadLettered`, so Lambda's
    own retries (MaximumRetryAttempts 2, each failing at once, touching nothing) end in the
    function's OnFailure destination, the step DLQ, with the hop and the reason in its
    payload. Invocations that die outright (timeout, out of memory) are retried by Lambda
    with the same payload and, after the third death, parked in the same DLQ; no code of the
    worker runs at the end of that path, so the DLQ's consumer (functions/deadletter/) fails
    the run, as it does for SQS hops that never reached the worker's last-receive handling.

Metrics (EMF): StepsCompleted, StepDuration (ms), RunsCompleted, RunsFailed, HopsDuplicate,
HopsRecovered, MalformedMessages, HopsFailed (a delivery that failed: retried, or
dead-lettered on its last attempt) and HopsDeadLettered (self-invoke, past the limit).
Every log line of a hop carries ``run_id`` and ``seq``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from engine.errors import InvalidInputError, RetryLater, TransientStoreError, transport_of
from engine.ports import Hop
from engine.service import HopResult, RunService
from functions import runtime
from functions.aws.dispatch import SELF_INVOKE_MARKER, LambdaStepQueue
from functions.observability import count, log_keys, logger, milliseconds
from functions.settings import get_settings

RETRY_BACKOFF_S = 0.1
"""First pause before a self-invoked hop is re-invoked; doubles per attempt, capped below."""
RETRY_BACKOFF_CAP_S = 2.0


class MalformedHop(Exception):
    """A message that is not a hop: it can never succeed and is left to reach the DLQ."""


class HopDeadLettered(Exception):
    """Raised by a self-invocation past the attempt limit: sends it to the OnFailure DLQ."""


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
        ended = svc.fail_hop(hop, reason)
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


# ---------------------------------------------------------------------------- SQS


def sqs_record(record: SQSRecord) -> str:
    """Powertools record handler: one hop message of the step queue."""
    attempt = int(record.attributes.approximate_receive_count or 1)
    try:
        hop = parse_hop(record.body)
    except MalformedHop as exc:
        malformed(str(exc), message_id=record.message_id, attempt=attempt)
        raise
    with log_keys(run_id=hop.run_id, seq=hop.seq):
        return apply_hop(hop, record.message_id, attempt)


def handle_sqs_batch(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A batch of hop messages; failed records are reported in ``batchItemFailures``."""
    # A processor per batch, not per module: it keeps the batch's results on itself, and the
    # local stack calls this handler from several threads at once.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(
        event=event, record_handler=sqs_record, processor=processor, context=context
    )


# ---------------------------------------------------------------------------- self-invoke


def is_self_invoke(event: Any) -> bool:
    return isinstance(event, dict) and event.get(SELF_INVOKE_MARKER) == "hop"


def handle_self_invoke(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """One hop invoked asynchronously; see the module docstring for the retry scheme."""
    attempt = event.get("attempt", 1)
    delivery_id = event.get("delivery_id") or context.aws_request_id
    try:
        hop = parse_hop(event.get("hop"))
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
            raise MalformedHop(f"attempt must be a positive integer, got {attempt!r}")
    except MalformedHop as exc:
        malformed(str(exc), request_id=context.aws_request_id)
        raise
    limit = get_settings().step_max_receives
    with log_keys(run_id=hop.run_id, seq=hop.seq):
        if attempt > limit:
            reason = str(event.get("reason") or "attempt limit reached")
            logger.error("hop dead-lettered", extra={"reason": reason})
            count("HopsDeadLettered")
            raise HopDeadLettered(reason)
        try:
            return {"result": apply_hop(hop, delivery_id, attempt)}
        except Exception as exc:
            _redeliver(hop, delivery_id, attempt, exc, context)
            return {"result": "retrying" if attempt < limit else "dead-lettering"}


def _redeliver(hop: Hop, delivery_id: str, attempt: int, exc: Exception, context: Any) -> None:
    """Invoke the worker again for ``hop``; if that fails, raise, so Lambda retries us."""
    reason = None
    if attempt >= get_settings().step_max_receives:
        reason = f"{type(exc).__name__}: {exc}"
    else:
        # Back off a little: the usual causes (throttling, an early hop) need time to pass.
        pause = min(RETRY_BACKOFF_S * 2 ** (attempt - 1), RETRY_BACKOFF_CAP_S)
        remaining = context.get_remaining_time_in_millis() / 1000
        time.sleep(max(0.0, min(pause, remaining - 1.0)))
    _self_invoke_queue().redeliver(hop, delivery_id, attempt + 1, reason)


def _self_invoke_queue() -> LambdaStepQueue:
    queue = runtime.service().queue
    if isinstance(queue, LambdaStepQueue):
        return queue
    # The service dispatches through SQS (or a wrapper) but this hop came by Invoke.
    from functions.aws import clients

    return LambdaStepQueue(get_settings().worker_function, clients.client("lambda"))
