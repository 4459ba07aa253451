"""Lambda entry point of the step worker (``functions.worker.handler.handler``).

Two events arrive here: an SQS batch of hop messages from the step queue (partial batch
failures reported in ``batchItemFailures``), and, with ``Dispatch=lambda``, one hop per
asynchronous self-invocation (``{"hopgraph": "hop", "hop": {...}}``). Each carrier has its
module (:mod:`functions.worker.sqs`, :mod:`functions.worker.self_invoke`); what a hop does
once it has arrived is in :mod:`functions.worker.hops`.
"""

from __future__ import annotations

from typing import Any

from functions.observability import lean_log_context, logger, metrics, traced
from functions.worker.self_invoke import handle_self_invoke, is_self_invoke
from functions.worker.sqs import handle_sqs_batch


@traced
@logger.inject_lambda_context(clear_state=True)
@lean_log_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Apply the hops in ``event``: an SQS batch, or one self-invoked hop."""
    return (
        handle_self_invoke(event, context)
        if is_self_invoke(event)
        else handle_sqs_batch(event, context)
    )
