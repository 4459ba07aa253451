"""Lambda entry point of the step worker (``functions.worker.handler.handler``).

Two events arrive here: an SQS batch of hop messages from the step queue (partial batch
failures reported in ``batchItemFailures``), and, with ``Dispatch=lambda``, one hop per
asynchronous self-invocation (``{"hopgraph": "hop", "hop": {...}}``). The logic is in
:mod:`functions.worker.hops`.
"""

from __future__ import annotations

from typing import Any

from functions.observability import logger, metrics, traced
from functions.worker.hops import handle_self_invoke, handle_sqs_batch, is_self_invoke


@traced
@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Apply the hops in ``event``: an SQS batch, or one self-invoked hop."""
    return (
        handle_self_invoke(event, context)
        if is_self_invoke(event)
        else handle_sqs_batch(event, context)
    )
