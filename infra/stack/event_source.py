"""An SQS event source mapping, emulated: poll a queue and call a Lambda handler with batches.

Lambda's SQS poller receives up to ``BatchSize`` messages, calls the function with an event
of the exact shape below, deletes the messages the function reports as done
(``ReportBatchItemFailures``) and leaves the others to reappear after their visibility
timeout. This does the same against any SQS endpoint (moto in-process, the local stack's moto
server), so the worker and the starter run locally on real-shaped events::

    {"Records": [{"messageId", "receiptHandle", "body",
                  "attributes": {"ApproximateReceiveCount", "SentTimestamp", "SenderId",
                                 "ApproximateFirstReceiveTimestamp", ...},
                  "messageAttributes": {name: {"stringValue", "binaryValue",
                                               "stringListValues", "binaryListValues",
                                               "dataType"}},
                  "md5OfMessageAttributes" (when there are attributes), "md5OfBody",
                  "eventSource": "aws:sqs", "eventSourceARN", "awsRegion"}]}

Hand-written because no library emulates the poller without Docker (SAM CLI's
``sam local`` does not poll queues). Dead-lettering after ``maxReceiveCount`` is not done
here: SQS does it on receive, and moto implements the redrive policy the same way (checked
by tests/functional/test_event_source.py).

Response semantics, as Lambda's: a handler that raises fails the whole batch; a response
without ``batchItemFailures`` (or with an empty list) succeeds the whole batch; a failure
entry naming no message of the batch fails the whole batch.

Around the invocation, Lambda's own behaviours (:mod:`infra.stack.invocations`), from the
function's settings in template.yaml (:meth:`SqsEventSource.from_template`): a message whose
``AWSTraceHeader`` shows its chain has reached the recursive loop limit is not processed and
returns to the queue, unless the function declares ``RecursiveLoop: Allow``; an invocation
that overruns its ``Timeout`` fails the whole batch, whatever it would have answered.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from infra.stack.invocations import (
    FunctionSettings,
    Invocation,
    InvocationTimedOut,
    instrument,
    invoke,
    longest_chain,
)
from infra.template import reader as template

Handler = Callable[[dict[str, Any], Any], Any]
log = logging.getLogger("hopgraph.local.sqs")
_MAX_BATCH = 10  # SQS's ReceiveMessage and DeleteMessageBatch limit


@dataclass(frozen=True, slots=True)
class PollResult:
    """What one poll did: messages received, and how many of them the handler finished."""

    received: int
    succeeded: int

    @property
    def failed(self) -> int:
        return self.received - self.succeeded


class SqsEventSource:
    """Feeds one queue's messages to ``handler`` in batches, as Lambda's event source does.

    ``failed_visibility``: where Lambda leaves a failed message invisible until its visibility
    timeout ends, set that timeout to this many seconds instead (0: at once; tests use it
    to replay redeliveries without waiting). ``None`` keeps SQS's behaviour.

    ``function``: the consumer's Lambda settings (timeout, memory, ``RecursiveLoop``); without
    it, a function of ``function_name``, ``timeout_s`` and ``memory_limit_in_mb`` that allows
    recursive loops.
    """

    def __init__(
        self,
        sqs_client: Any,
        queue_url: str,
        handler: Handler,
        *,
        batch_size: int = 10,
        visibility_timeout: int | None = None,
        wait_time_seconds: int = 0,
        failed_visibility: int | None = None,
        function_name: str = "hopgraph-local",
        memory_limit_in_mb: int = 256,
        timeout_s: float = 30.0,
        function: FunctionSettings | None = None,
    ) -> None:
        if not 1 <= batch_size <= _MAX_BATCH:
            raise ValueError(f"batch_size must be 1 to {_MAX_BATCH}, got {batch_size}")
        self.sqs = sqs_client
        self.queue_url = queue_url
        self.handler = handler
        self.batch_size = batch_size
        self.visibility_timeout = visibility_timeout
        self.wait_time_seconds = wait_time_seconds
        self.failed_visibility = failed_visibility
        self.function = function or FunctionSettings(
            function_name, timeout_s, memory_limit_in_mb, recursive_loop="Allow"
        )
        self._queue_arn: str | None = None
        # Its own calls run outside any invocation; a handler that shares it (tests do) sends
        # with the invocation's trace header, as through its own client.
        instrument(sqs_client)

    @classmethod
    def from_template(
        cls,
        sqs_client: Any,
        queue_urls: dict[str, str],
        handler: Handler,
        function_id: str,
        *,
        function_name: str,
        template_doc: template.Template | None = None,
        queue: str | None = None,
        **options: Any,
    ) -> SqsEventSource:
        """The event source ``function_id`` declares in the template (its first SQS event,
        or the one on ``queue``, a queue's logical id), with the function's settings.
        ``queue_urls`` maps queue logical ids to URLs."""
        definition = template.function_definitions(template_doc)[function_id]
        sources = [s for s in definition["sqs_event_sources"] if queue in (None, s["queue"])]
        source = sources[0]
        settings = FunctionSettings.from_template(function_name, definition)
        options.setdefault("batch_size", source["batch_size"])
        return cls(sqs_client, queue_urls[source["queue"]], handler, function=settings, **options)

    # -- one batch -------------------------------------------------------------------------
    def poll_once(self) -> PollResult:
        """Receive one batch, hand it to the handler, settle it. Returns what happened."""
        messages = self._receive()
        if not messages:
            return PollResult(0, 0)
        stopped = {m["MessageId"] for m in messages if self._stopped(m)}
        passed = [m for m in messages if m["MessageId"] not in stopped]
        failed = {m["MessageId"] for m in messages}  # if the handler never returns: all
        try:
            failed = stopped | (self._invoke(passed) if passed else set())
        finally:
            self._settle(messages, failed)
        return PollResult(len(messages), len(messages) - len(failed))

    def _stopped(self, message: dict[str, Any]) -> bool:
        """Does recursive loop detection keep Lambda from processing this message?"""
        chain = self.function.chain_length(_trace_header(message))
        if not self.function.stops(chain):
            return False
        log.error(
            "recursive loop detected: %s is not invoked for message %s (its chain has %d "
            "invocations); it returns to the queue",
            self.function.name,
            message["MessageId"],
            chain,
        )
        return True

    def _receive(self) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "QueueUrl": self.queue_url,
            "MaxNumberOfMessages": self.batch_size,
            "WaitTimeSeconds": self.wait_time_seconds,
            "AttributeNames": ["All"],
            "MessageAttributeNames": ["All"],
        }
        if self.visibility_timeout is not None:
            kwargs["VisibilityTimeout"] = self.visibility_timeout
        messages: list[dict[str, Any]] = self.sqs.receive_message(**kwargs).get("Messages", [])
        return messages

    def _invoke(self, messages: list[dict[str, Any]]) -> set[str]:
        """Call the handler with these messages; the ids of the records that failed."""
        event = {"Records": [self._record(m) for m in messages]}
        ids = {r["messageId"] for r in event["Records"]}
        chain = longest_chain(self.function, (_trace_header(m) for m in messages))
        invocation = Invocation(self.function, chain + 1)
        try:
            response = invoke(invocation, self.handler, event)
        except InvocationTimedOut as exc:
            log.error("%s: the whole batch of %d returns to the queue", exc, len(ids))
            return ids
        except Exception:
            log.exception("handler failed: the whole batch of %d returns to the queue", len(ids))
            return ids
        return _failed_ids(response, ids)

    def _settle(self, messages: list[dict[str, Any]], failed: set[str]) -> None:
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            self._delete(done)
        retry = [m for m in messages if m["MessageId"] in failed]
        if retry and self.failed_visibility is not None:
            entries = [
                {
                    "Id": str(i),
                    "ReceiptHandle": m["ReceiptHandle"],
                    "VisibilityTimeout": self.failed_visibility,
                }
                for i, m in enumerate(retry)
            ]
            self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        entries = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
        ]
        response = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        for failure in response.get("Failed", []):
            # The message will be delivered again; the handlers are idempotent, so that is safe.
            log.warning("could not delete message %s: %s", failure["Id"], failure.get("Message"))

    # -- event shape -----------------------------------------------------------------------
    @property
    def queue_arn(self) -> str:
        if self._queue_arn is None:
            attributes = self.sqs.get_queue_attributes(
                QueueUrl=self.queue_url, AttributeNames=["QueueArn"]
            )
            self._queue_arn = str(attributes["Attributes"]["QueueArn"])
        return self._queue_arn

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        record: dict[str, Any] = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": dict(message.get("Attributes", {})),
            "messageAttributes": {
                name: _message_attribute(value)
                for name, value in message.get("MessageAttributes", {}).items()
            },
            "md5OfBody": message["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": self.sqs.meta.region_name,
        }
        if "MD5OfMessageAttributes" in message:
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        return record

    # -- the poller ------------------------------------------------------------------------
    def run(self, stop_event: threading.Event, concurrency: int = 1, idle_wait: float = 0.05
            ) -> None:  # fmt: skip
        """Poll with ``concurrency`` threads until ``stop_event`` is set; returns when all
        threads have finished their current batch."""
        threads = [
            threading.Thread(target=self._loop, args=(stop_event, idle_wait), daemon=True,
                             name=f"sqs-poller-{i}")
            for i in range(max(1, concurrency))
        ]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _loop(self, stop_event: threading.Event, idle_wait: float) -> None:
        while not stop_event.is_set():
            try:
                result = self.poll_once()
            except Exception:  # the endpoint went away or refused: keep polling, slower
                log.exception("polling %s failed", self.queue_url)
                stop_event.wait(1.0)
                continue
            if result.received == 0:
                stop_event.wait(idle_wait)


def _trace_header(message: dict[str, Any]) -> str | None:
    header: str | None = message.get("Attributes", {}).get("AWSTraceHeader")
    return header


def _failed_ids(response: Any, ids: set[str]) -> set[str]:
    """The failed records a ReportBatchItemFailures response names (Lambda's rules)."""
    if not isinstance(response, dict) or not response.get("batchItemFailures"):
        return set()
    failures = response["batchItemFailures"]
    named = [str(f.get("itemIdentifier")) for f in failures if isinstance(f, dict)]
    if not isinstance(failures, list) or len(named) != len(failures) or not set(named) <= ids:
        log.error("invalid batchItemFailures %r: the whole batch fails", failures)
        return set(ids)
    return set(named)


def _message_attribute(value: dict[str, Any]) -> dict[str, Any]:
    """A ReceiveMessage attribute in the camel-case shape of Lambda's SQS event."""
    attribute: dict[str, Any] = {
        "stringListValues": list(value.get("StringListValues", [])),
        "binaryListValues": [_b64(b) for b in value.get("BinaryListValues", [])],
        "dataType": value["DataType"],
    }
    if "StringValue" in value:
        attribute["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        attribute["binaryValue"] = _b64(value["BinaryValue"])
    return attribute


def _b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()
