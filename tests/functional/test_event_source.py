"""``infra.stack.event_source.SqsEventSource``: real-shaped events from a moto queue, Lambda's
partial-batch semantics, and SQS's own redrive to the DLQ; plus ``SqsStepQueue``."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from engine.ports import Hop
from functions.aws.dispatch import SqsStepQueue
from infra.stack.event_source import SqsEventSource
from tests.events import load_event
from tests.functional.aws_stack import REGION, AwsStack, aws_stack


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsStack]:
    with aws_stack(monkeypatch) as s:
        yield s


class Recorder:
    """A handler that keeps every event and context, and fails the ids it is told to."""

    def __init__(self, fail: set[str] | None = None, response: Any = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.contexts: list[Any] = []
        self.fail = fail or set()
        self.response = response
        self.lock = threading.Lock()

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        with self.lock:
            self.events.append(event)
            self.contexts.append(context)
        if self.response is not None:
            return self.response
        failed = [r["messageId"] for r in event["Records"] if r["body"] in self.fail]
        return {"batchItemFailures": [{"itemIdentifier": i} for i in failed]}

    @property
    def bodies(self) -> list[str]:
        return [r["body"] for e in self.events for r in e["Records"]]


def send(stack: AwsStack, *bodies: str, **kwargs: Any) -> None:
    for body in bodies:
        stack.sqs.send_message(QueueUrl=stack.urls["StepQueue"], MessageBody=body, **kwargs)


def source(stack: AwsStack, handler: Any, **kwargs: Any) -> SqsEventSource:
    kwargs.setdefault("failed_visibility", 0)
    return SqsEventSource(stack.sqs, stack.urls["StepQueue"], handler, **kwargs)


def test_the_event_has_the_shape_lambda_gives_the_function(stack: AwsStack) -> None:
    # Given a message with one attribute of each kind
    attributes = {
        "kind": {"DataType": "String", "StringValue": "hop"},
        "size": {"DataType": "Number", "StringValue": "42"},
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
    }
    send(stack, '{"a": 1}', MessageAttributes=attributes)
    handler = Recorder()
    # When it is polled
    result = source(stack, handler).poll_once()
    # Then the handler got one record with exactly the keys of a real event's record
    assert (result.received, result.succeeded) == (1, 1)
    [record] = handler.events[0]["Records"]
    real = load_event("sqs_step_batch")["Records"][0]
    assert set(record) == set(real) | {"md5OfMessageAttributes"}
    assert set(record["attributes"]) >= set(real["attributes"])
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["body"] == '{"a": 1}'
    assert record["md5OfBody"] == hashlib.md5(b'{"a": 1}').hexdigest()
    assert (record["eventSource"], record["awsRegion"]) == ("aws:sqs", REGION)
    assert record["eventSourceARN"] == f"arn:aws:sqs:{REGION}:123456789012:StepQueue"
    assert record["messageAttributes"] == {
        "kind": {"stringValue": "hop", "stringListValues": [], "binaryListValues": [],
                 "dataType": "String"},
        "size": {"stringValue": "42", "stringListValues": [], "binaryListValues": [],
                 "dataType": "Number"},
        "blob": {"binaryValue": "AAE=", "stringListValues": [], "binaryListValues": [],
                 "dataType": "Binary"},
    }  # fmt: skip
    # And a Lambda context the handlers and Powertools can read
    context = handler.contexts[0]
    assert context.aws_request_id and context.function_name == "hopgraph-local"
    assert context.memory_limit_in_mb == 256
    assert 0 < context.get_remaining_time_in_millis() <= 30_000
    # And the message was deleted
    assert stack.messages("StepQueue") == []


def test_failed_records_stay_and_come_back_the_others_are_deleted(stack: AwsStack) -> None:
    # Given three messages, one of which the handler fails
    send(stack, "ok-1", "bad", "ok-2")
    handler = Recorder(fail={"bad"})
    # When one batch is polled
    result = source(stack, handler).poll_once()
    # Then only the failed one is still there, received once, visible again at once
    assert (result.received, result.failed) == (3, 1)
    [left] = stack.messages("StepQueue")
    assert left["Body"] == "bad"


def test_a_handler_that_raises_fails_the_whole_batch(stack: AwsStack) -> None:
    # Given a handler that raises
    send(stack, "one", "two")

    def crashing(event: dict[str, Any], context: Any) -> Any:
        raise RuntimeError("boom")

    # When a batch is polled, Then every message stays
    assert source(stack, crashing).poll_once().failed == 2
    assert sorted(m["Body"] for m in stack.messages("StepQueue")) == ["one", "two"]


def test_an_item_failure_naming_no_record_fails_the_whole_batch(stack: AwsStack) -> None:
    # Given a handler that reports a failure of a message it was never given
    send(stack, "one", "two")
    handler = Recorder(response={"batchItemFailures": [{"itemIdentifier": "not-a-message"}]})
    # When a batch is polled, Then Lambda's rule applies: nothing is deleted
    assert source(stack, handler).poll_once().failed == 2


def test_sqs_itself_moves_a_message_to_the_dlq_after_max_receive_count(stack: AwsStack) -> None:
    # Given a message its handler always fails, on the step queue (maxReceiveCount 5)
    send(stack, "poison")
    handler = Recorder(fail={"poison"})
    events = source(stack, handler)
    # When it is polled until the queue is empty
    polls = 0
    while events.poll_once().received:
        polls += 1
    # Then it was handed over five times, with receive counts 1..5, and is now in the DLQ
    assert polls == 5
    counts = [e["Records"][0]["attributes"]["ApproximateReceiveCount"] for e in handler.events]
    assert counts == ["1", "2", "3", "4", "5"]
    assert [m["Body"] for m in stack.messages("StepDLQ")] == ["poison"]


def test_run_polls_with_several_threads_until_stopped(stack: AwsStack) -> None:
    # Given 40 messages
    bodies = [f"m-{i}" for i in range(40)]
    send(stack, *bodies)
    handler = Recorder()
    stop = threading.Event()
    poller = threading.Thread(target=source(stack, handler).run, args=(stop, 3))
    # When the source runs until they are all handled
    poller.start()
    deadline = time.monotonic() + 20
    while len(handler.bodies) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    poller.join(timeout=10)
    # Then each was handled exactly once, in batches of at most 10, and the loop ended
    assert sorted(handler.bodies) == sorted(bodies)
    assert max(len(e["Records"]) for e in handler.events) <= 10
    assert not poller.is_alive()


def test_sqs_step_queue_sends_the_hop_as_json(stack: AwsStack) -> None:
    # Given the step queue adapter
    queue = SqsStepQueue(stack.urls["StepQueue"], stack.sqs)
    hop = Hop("r_1", "g_1", 3, "evaluate", recheck=True)
    # When a hop is dispatched
    queue.dispatch(hop)
    # Then one message carries exactly its dict form
    [message] = stack.messages("StepQueue")
    assert json.loads(message["Body"]) == hop.to_dict()
    assert Hop.from_dict(json.loads(message["Body"])) == hop


def test_a_delayed_hop_is_held_by_sqs_for_whole_seconds_at_most_900(stack: AwsStack) -> None:
    # Given the step queue adapter and a retry due in 0.2 s, and one due in an hour
    queue = SqsStepQueue(stack.urls["StepQueue"], stack.sqs)
    soon = Hop("r_1", "g_1", 3, "evaluate", attempt=2, delay_s=0.2)
    later = Hop("r_1", "g_1", 3, "evaluate", index=4, parallel=True, attempt=3, delay_s=3600)
    # When they are dispatched
    queue.dispatch(soon)
    queue.dispatch(later)
    # Then the first comes once SQS held it (a whole second), carrying its attempt
    deadline = time.monotonic() + 10
    visible: list[dict[str, Any]] = []
    while not visible and time.monotonic() < deadline:
        visible = stack.messages("StepQueue")
    (message,) = visible
    # And the other is still held (900 s, SQS's longest delay)
    attributes = stack.sqs.get_queue_attributes(
        QueueUrl=stack.urls["StepQueue"], AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"
    assert Hop.from_dict(json.loads(message["Body"])) == replace(soon, delay_s=0)


def test_sqs_step_queue_errors_reach_the_caller(stack: AwsStack) -> None:
    # Given a queue URL that does not exist
    missing = stack.urls["StepQueue"].replace("StepQueue", "NoSuchQueue")
    queue = SqsStepQueue(missing, stack.sqs)
    # When a hop is dispatched, Then SQS's error is raised to the caller
    with pytest.raises(ClientError):
        queue.dispatch(Hop("r_1", "g_1", 0, "extract"))
