"""Make moto's SQS mark dead letters as SQS does: a message moved to a dead-letter queue by a
redrive policy carries the system attribute ``DeadLetterQueueSourceArn`` (the queue it came
from), which ReceiveMessage returns when asked for it or for ``All``. moto 5 moves the
message but sets no such attribute, and its ReceiveMessage response lists a fixed set of
attributes without it.

The step dead-letter consumer relies on it: a letter without it was sent to the DLQ by
someone, not moved there by SQS, and fails no run (functions/deadletter/letters.py). Two
patches, each named after the moto function it wraps:

- ``moto.sqs.models.Queue.add_message``: a message that was already received (SQS moves a
  message to its DLQ on the receive past ``maxReceiveCount``; a message sent to a queue was
  never received) gets the attribute, naming the queue whose redrive policy targets this one.
- ``moto.sqs.responses.SQSResponse.receive_message``: the attribute is added to each returned
  message whose request asked for it (or for ``All``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

ATTRIBUTE = "DeadLetterQueueSourceArn"


@contextlib.contextmanager
def dead_letters_marked() -> Iterator[None]:
    from moto.sqs import models, responses

    original_add = models.Queue.add_message
    original_receive = responses.SQSResponse.receive_message

    def add_message(self: Any, message: Any) -> None:
        if message.approximate_receive_count > 0 and ATTRIBUTE not in message.system_attributes:
            source = _source_queue(self)
            if source is not None:
                message.system_attributes[ATTRIBUTE] = {"StringValue": source, "DataType": "String"}
        original_add(self, message)

    def receive_message(self: Any) -> Any:
        response = original_receive(self)
        return _with_sources(self, response)

    models.Queue.add_message = add_message
    responses.SQSResponse.receive_message = receive_message
    try:
        yield
    finally:
        models.Queue.add_message = original_add
        responses.SQSResponse.receive_message = original_receive


def _source_queue(dlq: Any) -> str | None:
    """The ARN of the one queue whose redrive policy moves messages to ``dlq``."""
    from moto.sqs.models import sqs_backends

    sources = [
        queue.queue_arn
        for regions in sqs_backends.values()
        for backend in regions.values()
        for queue in backend.queues.values()
        if queue.dead_letter_queue is dlq
    ]
    return sources[0] if len(sources) == 1 else None


def _with_sources(handler: Any, response: Any) -> Any:
    """``response`` (moto's ActionResult) with the attribute on each message that has it."""
    asked = _asked_attributes(handler)
    result = getattr(response, "result", None)
    if not ({"All", ATTRIBUTE} & asked) or not isinstance(result, dict):
        return response
    messages = result.get("Messages") or []
    if not messages:
        return response
    queue = handler.sqs_backend.get_queue(handler._get_queue_name())
    by_id = {m.id: m for m in queue._messages}
    for message in messages:
        stored = by_id.get(message["MessageId"])
        value = (stored.system_attributes or {}).get(ATTRIBUTE) if stored is not None else None
        if value:
            message.setdefault("Attributes", {})[ATTRIBUTE] = value["StringValue"]
    return response


def _asked_attributes(handler: Any) -> set[str]:
    names: set[str] = set()
    for param in ("MessageSystemAttributeNames", "AttributeNames"):
        with contextlib.suppress(Exception):
            names.update(handler._get_param(param) or [])
    return names
