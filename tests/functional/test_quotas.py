"""Per-owner quotas: runs in flight (API and starter) and requests per second (API), each a
429 naming the quota, from the one error table."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest

from engine.errors import QuotaExceeded, transport_of
from functions import quotas
from functions.settings import read_settings
from functions.starter.handler import handler as starter
from tests import auth_tokens
from tests.functional.api_harness import ApiStack, Reply, api_stack
from tests.functional.aws_stack import lambda_context

ALICE, BOB = "alice", "bob"


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiStack]:
    with api_stack(monkeypatch, quota_runs_in_flight="2") as s:
        yield s


def _graph(stack: ApiStack, owner: str) -> str:
    reply = stack.call("http_create_graph", token=auth_tokens.token(owner))
    assert reply.status == 201
    graph_id: str = reply.json()["graph_id"]
    return graph_id


def _start(stack: ApiStack, owner: str, graph_id: str) -> Reply:
    body = {"graph_id": graph_id, "input": {"code": "x = 1\n"}}
    return stack.call("http_start_run", token=auth_tokens.token(owner), body=body)


def test_the_quota_is_a_429_in_the_error_table() -> None:
    error = QuotaExceeded("runs_in_flight", 2, "OwnerRunsInFlight")
    row = transport_of(error)
    assert (row.status, row.type, row.disposition) == (429, "quota_exceeded", "retry")
    assert "quota runs_in_flight exceeded" in str(error) and "OwnerRunsInFlight" in str(error)


def test_an_owner_at_the_runs_in_flight_quota_gets_a_429_naming_it(stack: ApiStack) -> None:
    # Given Alice with two runs running (nothing drains the step queue), the quota
    graph_id = _graph(stack, ALICE)
    assert [_start(stack, ALICE, graph_id).status for _ in range(2)] == [202, 202]
    # When she starts a third
    reply = _start(stack, ALICE, graph_id)
    # Then it is refused with a 429 that names the quota, and says when to try again
    assert reply.status == 429
    error = reply.error
    assert (error["type"], error["quota"], error["limit"]) == (
        "quota_exceeded",
        "runs_in_flight",
        2,
    )
    assert reply.headers["retry-after"] == "1"
    # And the compat route is held to the same quota
    compat = stack.call(
        "http_compat_run_graph", token=auth_tokens.token(ALICE), body={"graph_id": graph_id}
    )
    assert compat.status == 429
    # And another owner is not
    assert _start(stack, BOB, _graph(stack, BOB)).status == 202
    # And once Alice's runs end, she may start again
    stack.drain()
    assert _start(stack, ALICE, graph_id).status == 202


def test_the_starter_retries_a_request_over_the_quota(stack: ApiStack) -> None:
    # Given Alice at her quota, and a queued request of hers
    graph_id = _graph(stack, ALICE)
    for _ in range(2):
        _start(stack, ALICE, graph_id)
    body = {"graph_id": graph_id, "input": {"code": "x = 1\n"}, "owner": ALICE}
    event = {"Records": [_sqs_record(json.dumps(body))]}
    # When the starter handles it, then the record fails (SQS delivers it again later)
    response = starter(event, lambda_context("hopgraph-starter"))
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    running = stack.service.store.list_runs(owner=ALICE, status="running", limit=10).items
    assert len(running) == 2
    assert stack.aws.messages("RunRequestsDLQ") == []  # not parked: it may start later
    # And delivered again once her runs ended, it starts
    stack.drain()
    assert starter(event, lambda_context("hopgraph-starter")) == {"batchItemFailures": []}
    assert len(stack.service.store.list_runs(owner=ALICE, limit=10).items) == 3


def _sqs_record(body: str) -> dict[str, object]:
    from tests.events import load_event

    record: dict[str, object] = load_event("sqs_run_requests")["Records"][0]
    record.update(messageId="m-1", body=body)
    return record


def test_requests_per_second_are_counted_per_owner_and_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with api_stack(monkeypatch, quota_requests_per_second="2") as stack:
        # Given a clock pinned inside one second, and Alice's quota of 2 POSTs per second
        monkeypatch.setattr(quotas, "_now", lambda: 1_000.2)
        token = auth_tokens.token(ALICE)
        # When she makes three POSTs in that second
        replies = [stack.call("http_create_graph", token=token) for _ in range(3)]
        # Then the third is refused, naming the quota; GETs are not counted
        assert [r.status for r in replies] == [201, 201, 429]
        assert replies[2].error["quota"] == "requests_per_second"
        assert stack.call("http_list_graphs", token=token).status == 200
        # And Bob, in the same second, and Alice in the next, are served
        assert stack.call("http_create_graph", token=auth_tokens.token(BOB)).status == 201
        monkeypatch.setattr(quotas, "_now", lambda: 1_001.0)
        assert stack.call("http_create_graph", token=token).status == 201
        # And the counters expire (TTL) a minute later
        settings = read_settings()
        item = boto3.client("dynamodb").get_item(
            TableName=settings.table,
            Key={"PK": {"S": f"QUOTA#{ALICE}"}, "SK": {"S": "RPS#1000"}},
        )["Item"]
        assert (item["n"]["N"], item["expires_at"]["N"]) == ("2", "1060")


def test_quotas_are_off_at_zero(stack: ApiStack, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given quotas of 0, and a store and a table that must not be read or written
    settings = read_settings().model_copy(
        update={"quota_runs_in_flight": 0, "quota_requests_per_second": 0}
    )

    def unexpected(*args: object, **kwargs: object) -> None:
        raise AssertionError("a quota of 0 reads nothing")

    monkeypatch.setattr(stack.service.store, "list_runs", unexpected)
    # When the quotas are checked, then nothing is read and nothing is refused
    quotas.check_runs_in_flight(stack.service, ALICE, settings)
    quotas.count_request(unexpected, ALICE, settings)


def test_the_deployments_quota_reaches_the_child_runs_of_subgraph_nodes(stack: ApiStack) -> None:
    # Given the deployment's quota of two (the stack's settings), Then the engine that starts
    # child runs counts them against it (engine/runs_quota.py)
    from functions import runtime

    assert runtime.service().protocol.subgraphs.runs_in_flight == 2
