"""The run-requests dead-letter queue has a consumer: each parked request is logged with its
reason and kept in the table, and a redrive sends it to the run-requests queue again
(functions/deadletter/requests.py), through the handlers and event sources of template.yaml."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from functions.deadletter import requests as parked_requests
from functions.deadletter.handler import handler as dead_letter_handler
from functions.starter.handler import handler as starter
from infra.stack.event_source import SqsEventSource
from tests.functional.aws_stack import AwsStack, aws_stack, code_review_graph, lambda_context
from tests.functional.test_starter import OWNER, requests_event


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsStack]:
    with aws_stack(monkeypatch) as s:
        yield s


@pytest.fixture
def graph_id(stack: AwsStack) -> str:
    return stack.service.create_graph(code_review_graph(), owner=OWNER)[0].graph_id


def consumer(stack: AwsStack) -> SqsEventSource:
    """DeadLetterFunction's event on the run-requests DLQ, as the template declares it."""
    return SqsEventSource.from_template(
        stack.sqs, stack.urls, dead_letter_handler, "DeadLetterFunction",
        function_name="hopgraph-deadletter", queue="RunRequestsDLQ", failed_visibility=0,
    )  # fmt: skip


def kept(stack: AwsStack) -> list[dict[str, Any]]:
    reply = stack.dynamodb.query(
        TableName=stack.service.store.table,  # type: ignore[attr-defined]
        KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": {"S": parked_requests.PARTITION}},
    )
    return list(reply["Items"])


def log_lines(caplog: pytest.LogCaptureFixture, message: str) -> list[Any]:
    """The log records of ``message`` (their extra keys are attributes)."""
    return [r for r in caplog.records if r.getMessage() == message]


def redrive(**fields: Any) -> Any:
    event = {"hopgraph": parked_requests.REDRIVE, **fields}
    return dead_letter_handler(event, lambda_context("hopgraph-deadletter"))


def test_a_parked_request_is_logged_with_its_reason_and_kept(
    stack: AwsStack, graph_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given the starter parked the sample batch's malformed request
    event = requests_event(graph_id)
    bad = event["Records"][1]
    starter(event, lambda_context("hopgraph-starter"))
    caplog.clear()
    # When the dead-letter consumer polls the run-requests DLQ
    assert stack.drain(consumer(stack)) == 1
    # Then the queue is empty, and one log line says why, for which graph, under which id
    assert stack.messages("RunRequestsDLQ") == []
    [line] = log_lines(caplog, "run request parked")
    assert line.levelname == "ERROR" and line.message_id == bad["messageId"]
    assert "invalid run request" in line.reason and "max_steps" in line.reason
    # And the request is kept, whole, with the same reason
    [item] = kept(stack)
    assert item["body"]["S"] == bad["body"] and item["reason"]["S"] == line.reason
    assert item["message_id"]["S"] == bad["messageId"]
    assert int(item["expires_at"]["N"]) > float(item["parked_at"]["N"])


def test_a_request_the_queue_gave_up_on_is_redriven_and_starts_its_run_once(
    stack: AwsStack, graph_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a valid request without a key that the redrive policy moved to the DLQ (the
    # starter failed it on every receive: no reason attribute)
    body = json.dumps({"graph_id": graph_id, "input": {"code": "x = 1\n"}, "owner": OWNER})
    sent = stack.sqs.send_message(QueueUrl=stack.urls["RunRequestsDLQ"], MessageBody=body)
    stack.drain(consumer(stack))
    [line] = log_lines(caplog, "run request parked")
    assert line.reason == parked_requests.MOVED and line.graph_id == graph_id
    assert line.owner == OWNER
    # When it is redriven
    reply = redrive()
    # Then it went back to the run-requests queue, keyed by its first message id, and is
    # no longer kept
    assert reply == {"redriven": [sent["MessageId"]], "more_parked": False}
    assert kept(stack) == []
    [again] = stack.messages("RunRequestsQueue")
    assert json.loads(again["Body"])["idempotency_key"] == sent["MessageId"]
    # And the starter starts its run, once, even if the redrive sent it twice
    stack.sqs.send_message(QueueUrl=stack.urls["RunRequestsQueue"], MessageBody=again["Body"])
    stack.drain(stack.starter_source())
    [run] = stack.service.store.list_runs(limit=10).items
    assert run.graph_id == graph_id


def test_a_redrive_sends_only_the_requests_it_names(stack: AwsStack, graph_id: str) -> None:
    # Given two parked requests
    ids = [
        stack.sqs.send_message(QueueUrl=stack.urls["RunRequestsDLQ"], MessageBody=body)["MessageId"]
        for body in ("not json", json.dumps({"graph_id": graph_id, "idempotency_key": "k"}))
    ]
    stack.drain(consumer(stack))
    assert len(kept(stack)) == 2
    # When only the second is redriven
    reply = redrive(message_ids=[ids[1]])
    # Then it alone is sent, as it was (it has its key), and the first stays parked
    assert reply == {"redriven": [ids[1]], "more_parked": True}
    [message] = stack.messages("RunRequestsQueue")
    assert json.loads(message["Body"]) == {"graph_id": graph_id, "idempotency_key": "k"}
    assert [item["message_id"]["S"] for item in kept(stack)] == [ids[0]]


def test_the_step_dlq_is_still_the_consumers_other_queue(stack: AwsStack) -> None:
    # A letter on the step DLQ is not taken for a run request: it is a hop's (here one for a
    # run that does not exist, dropped)
    source = SqsEventSource.from_template(
        stack.sqs, stack.urls, dead_letter_handler, "DeadLetterFunction",
        function_name="hopgraph-deadletter", queue="StepDLQ", failed_visibility=0,
    )  # fmt: skip
    hop = {"run_id": "r_nope", "graph_id": "g", "seq": 0, "node": "a"}
    stack.sqs.send_message(QueueUrl=stack.urls["StepDLQ"], MessageBody=json.dumps(hop))
    assert stack.drain(source) == 1
    assert kept(stack) == []
