"""One error table: for every engine error class, the HTTP reply, the WebSocket reply and the
queue consumers (starter and worker) do what its row in ``engine.errors`` says."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from fastapi import FastAPI
from starlette.testclient import TestClient

import engine.graph
import engine.messages
import engine.tools
from engine.errors import (
    GraphValidationError,
    HopgraphError,
    IdempotencyConflict,
    JsonRuleError,
    MapTooWide,
    NotFoundError,
    Problem,
    QuotaExceeded,
    RecordTooLargeError,
    StateTooLargeError,
    StepConflict,
    transport_of,
)
from engine.ports import Hop
from functions.api.errors import install_error_handlers
from functions.starter import requests as starter
from functions.websocket.replies import CONNECT, error_reply
from functions.websocket.request import WsRequest
from functions.worker import hops
from tests.events import load_event
from tests.functional.aws_stack import AwsStack, aws_stack, code_review_graph

# Classes whose constructor takes more than a message.
SAMPLES: dict[type[HopgraphError], Callable[[], HopgraphError]] = {
    GraphValidationError: lambda: GraphValidationError([Problem("nodes", "missing")]),
    NotFoundError: lambda: NotFoundError("connection", "c_1"),
    StepConflict: lambda: StepConflict("r_1", 3),
    IdempotencyConflict: lambda: IdempotencyConflict("k", "r_1", ["input"]),
    JsonRuleError: lambda: JsonRuleError(("input", "a"), "nested too deep"),
    StateTooLargeError: lambda: StateTooLargeError(500_000, 350_000),
    RecordTooLargeError: lambda: RecordTooLargeError("graph", 500_000, 409_600),
    QuotaExceeded: lambda: QuotaExceeded("runs_in_flight", 100, "OwnerRunsInFlight"),
    MapTooWide: lambda: MapTooWide(2_000, 1_000, "MaxMapWidth", "map node 'grade' over 2000 items"),
    engine.tools.ToolError: lambda: engine.tools.ToolError("t", "ValueError", "boom"),
    engine.messages.ModelError: lambda: engine.messages.ModelError(
        "bedrock", "slow down", retryable=True, code="ThrottlingException"
    ),
}


def every_engine_error() -> list[type[HopgraphError]]:
    assert engine.graph.NoRouteError and engine.tools.ToolError  # their modules are loaded
    found: list[type[HopgraphError]] = [HopgraphError]
    for cls in found:
        found.extend(cls.__subclasses__())
    return found


def sample(cls: type[HopgraphError]) -> HopgraphError:
    return SAMPLES[cls]() if cls in SAMPLES else cls("something is wrong")  # type: ignore[call-arg]


ERRORS = every_engine_error()


@pytest.fixture(scope="module")
def stack() -> Iterator[AwsStack]:
    with pytest.MonkeyPatch.context() as monkeypatch, aws_stack(monkeypatch) as s:
        yield s


@pytest.fixture
def fresh_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsStack]:
    """A stack of its own, so its dead-letter queue holds only what the test parked."""
    with aws_stack(monkeypatch) as s:
        yield s


@pytest.fixture(scope="module")
def http() -> TestClient:
    """An app with the API's error handlers and a route that raises what it is given."""
    app = FastAPI()
    install_error_handlers(app)
    raising: dict[str, HopgraphError] = {}

    @app.get("/raise/{name}")
    def boom(name: str) -> None:
        raise raising[name]

    client = TestClient(app, raise_server_exceptions=False)
    client.raising = raising  # type: ignore[attr-defined]
    return client


def test_the_walk_finds_every_engine_error() -> None:
    names = {cls.__name__ for cls in ERRORS}
    assert {"IdempotencyConflict", "JsonRuleError", "NoRouteError", "ToolError"} <= names


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_http_answers_with_the_table_s_status_and_type(http: TestClient, cls: type) -> None:
    exc = sample(cls)
    row = transport_of(exc)
    http.raising[cls.__name__] = exc  # type: ignore[attr-defined]
    reply = http.get(f"/raise/{cls.__name__}")
    assert reply.status_code == row.status
    assert reply.json()["error"]["type"] == row.type


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_a_websocket_reply_carries_the_table_s_status_and_type(cls: type) -> None:
    exc = sample(cls)
    row = transport_of(exc)
    # $connect answers in its return value (nothing is posted), so no gateway is needed
    result = error_reply(WsRequest(CONNECT, "c_1", "example.com", "prod"), exc)
    body = json.loads(result["body"])
    assert result["statusCode"] == body["status"] == row.status
    assert body["error"] == row.type


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_the_starter_parks_drops_or_retries_as_the_table_says(
    fresh_stack: AwsStack, monkeypatch: pytest.MonkeyPatch, cls: type
) -> None:
    stack = fresh_stack
    # Given a well-formed run request, for a graph its owner has, whose start fails
    exc = sample(cls)
    raw = load_event("sqs_run_requests")["Records"][0]
    body = json.loads(raw["body"])
    graph = stack.service.create_graph(code_review_graph(), owner=body["owner"])[0]
    raw["body"] = json.dumps({**body, "graph_id": graph.graph_id})
    monkeypatch.setattr(stack.service, "start_run", _raiser(exc))
    raw["messageId"] = f"m-{cls.__name__}"
    record = SQSRecord(raw)
    # When the starter handles it
    disposition = transport_of(exc).disposition
    if disposition == "retry":
        with pytest.raises(type(exc)):
            starter.start_requested_run(record)
        return
    outcome = starter.start_requested_run(record)
    # Then it is parked with the reason, or dropped, as the table says
    parked = stack.messages("RunRequestsDLQ")
    if disposition == "park":
        assert outcome == "malformed"
        [message] = parked
        assert message["MessageAttributes"][starter.REASON_ATTRIBUTE]["StringValue"] == str(exc)
    else:
        assert (outcome, parked) == ("dropped", [])


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_the_worker_drops_fails_the_run_or_retries_as_the_table_says(
    stack: AwsStack, monkeypatch: pytest.MonkeyPatch, cls: type
) -> None:
    # Given a hop whose first delivery fails with the error
    exc = sample(cls)
    svc = stack.service
    failed_runs: list[str] = []
    monkeypatch.setattr(svc, "process_hop", _raiser(exc))
    monkeypatch.setattr(
        svc, "fail_hop", lambda hop, reason, **_: failed_runs.append(reason) or True
    )
    hop = Hop("r_1", "g_1", 0, "a")
    disposition = transport_of(exc).disposition
    # When the worker applies it
    if disposition == "drop":
        # Then a dropped hop is acknowledged and the run left alone
        assert hops.apply_hop(hop, "d-1", attempt=1) == "stale"
        assert failed_runs == []
        return
    with pytest.raises(type(exc)):
        hops.apply_hop(hop, "d-1", attempt=1)
    # Then a parked one fails its run at once; a retried one only this delivery
    if disposition == "park":
        [reason] = failed_runs
        assert "cannot be processed" in reason
    else:
        assert failed_runs == []


def _raiser(exc: Exception) -> Callable[..., Any]:
    def raise_it(*args: Any, **kwargs: Any) -> Any:
        raise exc

    return raise_it
