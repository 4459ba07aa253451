"""Lambda entry point of the run starter (``functions.starter.handler.handler``).

An SQS batch from the run-requests queue; each record starts one run (idempotently), a
malformed one is parked in the run-requests DLQ, a transient failure fails only its record
(``batchItemFailures``). The logic is in :mod:`functions.starter.requests`.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)

from functions.observability import logger, metrics, traced
from functions.starter.requests import start_requested_run


@traced
@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Start the runs requested in an SQS batch."""
    # A processor per batch: it keeps the batch's results on itself (handlers share threads
    # in the local stack).
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response = process_partial_response(
        event=event, record_handler=start_requested_run, processor=processor, context=context
    )
    return dict(response)
