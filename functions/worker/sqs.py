"""The SQS carrier: a Powertools batch handler for the step queue's hop messages.

The step queue's ``maxReceiveCount`` is ``HOPGRAPH_STEP_MAX_RECEIVES``. The delivery id is
the SQS message id (stable across redeliveries) and the attempt is
``ApproximateReceiveCount``. A failed record is reported in ``batchItemFailures``; SQS
redelivers it after the visibility timeout. On the last allowed receive the worker first
marks the run failed (:func:`functions.worker.hops.apply_hop`), so that the run is not left
running when SQS moves the message to the DLQ on its next receive. A message that is not a
hop fails every receive, and so is left to reach the DLQ.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from functions.observability import log_keys
from functions.worker.hops import MalformedHop, apply_hop, malformed, parse_hop


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
