"""The run starter handler on the run-requests queue: start runs once, park the malformed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from engine.errors import TransientStoreError
from functions.starter.handler import handler
from functions.starter.requests import REASON_ATTRIBUTE
from tests.events import load_event
from tests.functional.aws_stack import (
    AwsStack,
    aws_stack,
    code_review_graph,
    lambda_context,
)


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsStack]:
    with aws_stack(monkeypatch) as s:
        yield s


OWNER = "7c1e4b52-90a1-4d3e-8f6a-2b9c0d4e5f61"  # who events/sqs_run_requests.json's runs are for


@pytest.fixture
def graph_id(stack: AwsStack) -> str:
    return stack.service.create_graph(code_review_graph(), owner=OWNER)[0].graph_id


def requests_event(graph_id: str) -> dict[str, Any]:
    """The sample batch (one good request, one malformed) aimed at ``graph_id``."""
    event = load_event("sqs_run_requests")
    for record in event["Records"]:
        body = json.loads(record["body"])
        for key in ("graph_id", "graphId"):
            if key in body:
                body[key] = graph_id
        record["body"] = json.dumps(body)
    return event


def runs(stack: AwsStack) -> list[Any]:
    """Every run, read whole (a listing carries only what lists show: no input)."""
    store = stack.service.store
    return [store.get_run(r.run_id) for r in store.list_runs(limit=100).items]


def parked(stack: AwsStack) -> list[tuple[str, str]]:
    """(body, reason) of each request in the run-requests DLQ."""
    return [
        (m["Body"], m["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"])
        for m in stack.messages("RunRequestsDLQ")
    ]


def test_the_sample_batch_starts_the_good_request_and_parks_the_malformed(
    stack: AwsStack, graph_id: str
) -> None:
    # Given the sample batch: a valid request and one with wrong fields
    event = requests_event(graph_id)
    good, bad = event["Records"]
    # When the starter handles it
    response = handler(event, lambda_context("hopgraph-starter"))
    # Then no record failed: the good one started a run under its idempotency key...
    assert response == {"batchItemFailures": []}
    [run] = runs(stack)
    assert (run.graph_id, run.status) == (graph_id, "running")
    assert run.idempotency_key == "nightly-review-2026-11-21"
    assert run.input == json.loads(good["body"])["input"]
    assert run.owner == OWNER
    [hop] = [json.loads(m["Body"]) for m in stack.messages("StepQueue")]
    assert (hop["run_id"], hop["seq"], hop["node"]) == (run.run_id, 0, "extract")
    # ...and the malformed one is in the DLQ with every problem in its reason
    [(body, reason)] = parked(stack)
    assert body == bad["body"]
    assert "graph_id: Field required" in reason
    assert "graphId: Extra inputs are not permitted" in reason
    assert "max_steps: Input should be a valid integer" in reason
    assert "owner: missing" in reason


def test_a_redelivered_request_without_a_key_starts_one_run(stack: AwsStack, graph_id: str) -> None:
    # Given a request without an idempotency key
    event = requests_event(graph_id)
    event["Records"] = event["Records"][:1]
    record = event["Records"][0]
    body = {"graph_id": graph_id, "input": {"code": "x = 1\n"}, "owner": OWNER}
    record["body"] = json.dumps(body)
    # When SQS delivers the same message twice (the first acknowledgement was lost)
    handler(event, lambda_context("hopgraph-starter"))
    record["attributes"]["ApproximateReceiveCount"] = "2"
    handler(event, lambda_context("hopgraph-starter"))
    # Then one run exists, keyed by the message id
    [run] = runs(stack)
    assert run.idempotency_key == record["messageId"]


def test_the_same_idempotency_key_in_two_messages_starts_one_run(
    stack: AwsStack, graph_id: str
) -> None:
    # Given two different messages carrying the same key
    body = {"graph_id": graph_id, "input": {"code": "x = 1\n"}, "idempotency_key": "k-1"}
    body["owner"] = OWNER
    for _ in range(2):
        stack.sqs.send_message(
            QueueUrl=stack.urls["RunRequestsQueue"], MessageBody=json.dumps(body)
        )
    # When the starter drains the queue
    stack.drain(stack.starter_source())
    # Then a single run was started
    assert [r.idempotency_key for r in runs(stack)] == ["k-1"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('{"graph_id": "g_x", "input": {', "body is not JSON"),
        ('["graph_id"]', "body: Input should be a valid dictionary"),
        ('{"graph_id": "g_missing", "input": {}, "owner": "$"}', "graph 'g_missing' not found"),
        ('{"graph_id": "@", "input": {}}', "owner: missing; every run belongs to someone"),
        ('{"graph_id": "@", "input": {}, "owner": ""}', "owner: String should have at least"),
        ('{"graph_id": "@", "input": {}, "owner": 7}', "owner: Input should be a valid string"),
        ('{"graph_id": "@", "input": {}, "owner": "mallory"}', "not found"),
        ('{"graph_id": "@", "owner": "$", "input": {}, "max_steps": 0}',
         "max_steps: Input should be greater"),
        ('{"graph_id": "@", "owner": "$", "input": {}, "max_steps": true}',
         "max_steps: Input should be a valid"),
        ('{"graph_id": "@", "owner": "$", "input": "code"}',
         "input: Input should be a valid dictionary"),
        ('{"graph_id": "@", "input": {"a": 1}, "owner": "$", "by": "me"}', "by: Extra inputs"),
        ('{"graph_id": "@", "owner": "$", "input": {}, "max_steps": "3"}',
         "max_steps: Input should be a valid"),
        ('{"graph_id": "@", "owner": "$", "input": {}, "max_steps": 3.0}',
         "max_steps: Input should be a valid"),
        ('{"graph_id": "@", "input": {"v": %s}}' % ("[" * 10_000 + "]" * 10_000),
         "nested deeper than 64 levels"),
        ('{"graph_id": "@", "input": {"v": %s}}' % ("[" * 256 + "]" * 256),
         "input.v[0][0]"),
        ('{"graph_id": "@", "input": {"\\ud800": 1}}', "the key is not valid Unicode"),
        ('{"graph_id": "@", "input": {"a": "\\udfff"}}', "input.a: the string is not valid"),
    ],
    ids=["not-json", "not-object", "unknown-graph", "no-owner", "empty-owner", "owner-not-string",
         "another-owner-s-graph", "max-steps-0", "max-steps-true",
         "input-not-object", "extra-field", "max-steps-string", "max-steps-float",
         "nested-10000", "nested-256", "surrogate-key", "surrogate-string"],
)  # fmt: skip
def test_a_malformed_request_is_parked_and_the_rest_of_the_batch_is_fine(
    stack: AwsStack, graph_id: str, body: str, reason: str
) -> None:
    # Given a batch: the malformed request between two good ones
    good = json.dumps({"graph_id": graph_id, "input": {"code": "x = 1\n"}, "owner": OWNER})
    body = body.replace("@", graph_id).replace("$", OWNER)
    for text in (good, body, good):
        stack.sqs.send_message(QueueUrl=stack.urls["RunRequestsQueue"], MessageBody=text)
    # When the starter drains the queue
    handled = stack.drain(stack.starter_source())
    # Then each message was handled once: two runs, one request parked with its reason
    assert handled == 3
    assert len(runs(stack)) == 2
    [(parked_body, parked_reason)] = parked(stack)
    assert parked_body == body
    assert reason in parked_reason
    assert stack.messages("RunRequestsQueue") == []


def test_a_transient_failure_fails_only_its_record(
    stack: AwsStack, graph_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a store that is throttled for one graph's runs only
    svc = stack.service
    other = svc.create_graph(code_review_graph(), owner=OWNER)[0].graph_id
    start_run = svc.start_run

    def throttled(gid: str, *args: Any, **kwargs: Any) -> Any:
        if gid == other:
            raise TransientStoreError("DynamoDB is busy")
        return start_run(gid, *args, **kwargs)

    monkeypatch.setattr(svc, "start_run", throttled)
    event = requests_event(graph_id)
    event["Records"][1]["body"] = json.dumps({"graph_id": other, "input": {}, "owner": OWNER})
    # When the starter handles the batch
    response = handler(event, lambda_context("hopgraph-starter"))
    # Then only the throttled record is reported failed (SQS retries it); nothing is parked
    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["messageId"]}]}
    assert len(runs(stack)) == 1
    assert parked(stack) == []


def test_a_key_reused_for_another_request_is_parked_with_the_run_it_names(
    stack: AwsStack, graph_id: str
) -> None:
    # Given a request that started a run under a key, then another input under the same key
    first = {"graph_id": graph_id, "input": {"code": "x = 1\n"}, "idempotency_key": "k-2"}
    first["owner"] = OWNER
    second = first | {"input": {"code": "y = 2\n"}}
    for body in (first, second):
        stack.sqs.send_message(
            QueueUrl=stack.urls["RunRequestsQueue"], MessageBody=json.dumps(body)
        )
    # When the starter drains the queue
    handled = stack.drain(stack.starter_source())
    # Then one run exists, and the second request is parked at once, saying why
    assert handled == 2
    [run] = runs(stack)
    assert run.input == first["input"]
    [(body, reason)] = parked(stack)
    assert json.loads(body) == second
    assert f"already started run {run.run_id!r} with a different input" in reason
