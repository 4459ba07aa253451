"""The self-invoke carrier (``Dispatch=lambda``): one hop per asynchronous invocation.

The event is ``{"hopgraph": "hop", "hop": {...}}``. Lambda's asynchronous retries keep the
request id, which is therefore the delivery id of a first delivery, but they count nothing
the handler can see. So the worker counts itself: a failed hop is re-invoked with
``attempt + 1`` and the *same* ``delivery_id`` in the payload (the id is what lets a
redelivery recover a step its earlier attempt committed but never dispatched the successor
of), after a short backoff. The invocation that fails on the last attempt marks the run
failed and re-invokes once more with ``attempt = limit + 1``; that invocation only raises
:class:`HopDeadLettered`, so Lambda's own retries (MaximumRetryAttempts 2, each failing at
once, touching nothing) end in the function's OnFailure destination, the step DLQ, with the
hop and the reason in its payload. Invocations that die outright (timeout, out of memory) are
retried by Lambda with the same payload and, after the third death, parked in the same DLQ;
no code of the worker runs at the end of that path, so the DLQ's consumer
(functions/deadletter/) fails the run, as it does for SQS hops that never reached the
worker's last-receive handling.

Metric (EMF): HopsDeadLettered (a hop past the attempt limit), beside those of
:mod:`functions.worker.hops`.
"""

from __future__ import annotations

import time
from typing import Any

from engine.deadlines import invocation_limit
from engine.ports import Hop
from functions import runtime
from functions.aws.dispatch import SELF_INVOKE_MARKER, LambdaStepQueue
from functions.observability import count, log_keys, logger
from functions.settings import get_settings
from functions.worker.hops import MalformedHop, apply_hop, malformed, parse_hop, remaining_s

RETRY_BACKOFF_S = 0.1
"""First pause before a self-invoked hop is re-invoked; doubles per attempt, capped below."""
RETRY_BACKOFF_CAP_S = 2.0


class HopDeadLettered(Exception):
    """Raised by a self-invocation past the attempt limit: sends it to the OnFailure DLQ."""


def is_self_invoke(event: Any) -> bool:
    return isinstance(event, dict) and event.get(SELF_INVOKE_MARKER) == "hop"


def handle_self_invoke(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """One hop invoked asynchronously; the module docstring explains the retry scheme."""
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
            with invocation_limit(remaining_s(context)):
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
