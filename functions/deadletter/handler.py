"""Lambda entry point of the dead-letter consumer (``functions.deadletter.handler.handler``).

An SQS batch from StepDLQ: each record is a hop AWS gave up on, and its run is failed with a
reason a person can act on (:mod:`functions.deadletter.letters`). A batch from
RunRequestsDLQ: each record is a run request that was parked, logged and kept for a redrive;
a direct invocation ``{"hopgraph": "redrive_run_requests"}`` redrives them
(:mod:`functions.deadletter.requests`).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from engine.service import RunService
from functions.deadletter import letters, requests
from functions.deadletter.service import service
from functions.observability import count, logger, metrics, traced
from functions.settings import get_settings


@traced
@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Fail the run of each dead-lettered hop in an SQS batch; keep each parked run request;
    redrive parked run requests when invoked to."""
    if event.get("hopgraph") == requests.REDRIVE:
        return requests.redrive(event, get_settings())
    return handle_batch(event, context, service())


def handle_batch(event: dict[str, Any], context: Any, svc: RunService) -> dict[str, Any]:
    """The batch through ``svc``; records that failed go in ``batchItemFailures``."""

    def record_handler(record: SQSRecord) -> str:
        if requests.from_run_requests(record, get_settings()):
            return requests.keep(record, get_settings())
        try:
            return letters.fail_run(svc, letters.parse_letter(record))
        except letters.MalformedLetter as exc:
            # The end of the line: logged whole, then acknowledged (see letters.py).
            logger.error("malformed dead letter", extra={"reason": str(exc), "body": record.body})
            count("MalformedMessages")
            return "malformed"

    # A processor per batch: it keeps the batch's results on itself (the local stack runs
    # handlers in threads).
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    return dict(response)
