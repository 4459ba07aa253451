"""The WebSocket Lambda handler, route by route, with the real-shaped events/ws_*.json.

Each test runs on both stores (in memory, and DynamoDB on moto with the table of
template.yaml). Replies go out through a real ``apigatewaymanagementapi`` client whose calls
botocore's Stubber answers, so what the handler posts is checked as API Gateway would get it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from engine.errors import NotFoundError
from engine.memory import MemoryQueue, MemoryRunStore
from engine.ports import Connection, RunStore
from engine.service import RunService
from engine.tools import load_toolkits
from functions import runtime
from functions.aws import clients
from functions.settings import get_settings
from functions.websocket.handler import ROUTES, handler
from infra.stack.lambda_context import LambdaContext
from tests.events import load_event

REGION = "us-east-1"
TABLE = "hopgraph-ws-test"
RUN_ID = "r_5f2b8c9d0e1a4b3c6d7e8f90"  # the run the events/ws_*.json name
CONNECTION_ID = "CQ7vLfbZoAMCLRg="  # ... and their connection
OWNER = "7c1e4b52-90a1-4d3e-8f6a-2b9c0d4e5f61"  # ... and who connected (its authorizer block)
ENDPOINT = "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/prod"
COUNTER = {
    "name": "counter",
    "entry": "inc",
    "nodes": {"inc": {"tool": "increment"}},
    "edges": {},
    "branches": {"inc": {"cases": [{"when": "count >= 3", "to": "END"}], "default": "inc"}},
}


class OwnedRuns(RunService):
    """A run service whose runs belong to the user who opens the events' connection, unless
    another owner is named."""

    def start_run(  # type: ignore[override]  # the same call, with a default owner
        self, graph_id: str, input: Any, *, owner: str | None = OWNER, **options: Any
    ) -> Any:
        return super().start_run(graph_id, input, owner=owner, **options)


class PinnedIds:
    """Graph and run ids the event files can name."""

    def __init__(self, *run_ids: str) -> None:
        self._runs = list(run_ids)

    def graph_id(self) -> str:
        return "g_counter"

    def run_id(self, graph_id: str, idempotency_key: str | None) -> str:
        return self._runs.pop(0)


_management_clients: dict[str, Any] = {}


def management_client(endpoint: str) -> Any:
    """One real Management API client per endpoint for the whole session: building a botocore
    client costs a quarter of a second, and tests attach a fresh Stubber to it each time."""
    if endpoint not in _management_clients:
        _management_clients[endpoint] = boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
    return _management_clients[endpoint]


class ManagementApiStub:
    """The Management API client of one endpoint, answered by botocore's Stubber and used by
    the code under test (through functions.aws.clients); ``posts`` records every
    PostToConnection as (connection id, decoded JSON)."""

    _EVENT = "before-parameter-build.apigatewaymanagementapi.PostToConnection"

    def __init__(self, endpoint: str = ENDPOINT) -> None:
        self.client = management_client(endpoint)
        self.stubber = Stubber(self.client)
        self.posts: list[tuple[str, Any]] = []
        self.client.meta.events.register(self._EVENT, self._record)
        clients.override("apigatewaymanagementapi", self.client, endpoint_url=endpoint)
        self.stubber.activate()

    def close(self) -> None:
        self.stubber.deactivate()
        self.client.meta.events.unregister(self._EVENT, self._record)

    def _record(self, params: dict[str, Any], **_: Any) -> None:
        self.posts.append((params["ConnectionId"], json.loads(params["Data"])))

    def expect_posts(self, count: int = 1) -> None:
        for _ in range(count):
            self.stubber.add_response("post_to_connection", {}, {"ConnectionId": ANY, "Data": ANY})

    def expect_error(self, code: str, status: int) -> None:
        self.stubber.add_client_error(
            "post_to_connection", service_error_code=code, http_status_code=status
        )

    def messages(self, connection_id: str = CONNECTION_ID) -> list[Any]:
        return [message for cid, message in self.posts if cid == connection_id]


@pytest.fixture
def ws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The Lambda's environment: table name, TTL, fake credentials; no endpoint override."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "HOPGRAPH_WS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOPGRAPH_TABLE", TABLE)
    monkeypatch.setenv("HOPGRAPH_CONNECTION_TTL_SECONDS", "7200")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    get_settings.cache_clear()
    clients.reset()
    yield
    get_settings.cache_clear()
    clients.reset()


@pytest.fixture(scope="module")
def moto_dynamodb() -> Iterator[Any]:
    """DynamoDB on moto, for a whole module (each test gets its own table)."""
    pytest.importorskip("functions.aws.dynamodb_store")
    from moto import mock_aws

    with mock_aws():
        yield boto3.client(
            "dynamodb",
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


@pytest.fixture(params=["memory", "dynamodb"])
def store(request: pytest.FixtureRequest, ws_env: None) -> Iterator[RunStore]:
    """Each store in turn; DynamoDB with a table created from template.yaml."""
    if request.param == "memory":
        yield MemoryRunStore()
        return
    from functions.aws.dynamodb_store import DynamoRunStore
    from infra.template.reader import create_table

    client = request.getfixturevalue("moto_dynamodb")
    table = f"{TABLE}-{uuid.uuid4().hex[:8]}"
    create_table(client, table)
    yield DynamoRunStore(table, client)
    client.delete_table(TableName=table)


@pytest.fixture
def service(store: RunStore) -> Iterator[RunService]:
    """The run service the handler finds through functions.runtime."""
    svc = OwnedRuns(
        store,
        MemoryQueue(),
        load_toolkits(["engine.toolkits.basics"]),
        ids=PinnedIds(RUN_ID, "r_other"),
    )
    svc.create_graph(COUNTER)
    runtime.install(svc)
    yield svc
    runtime.install(None)


@pytest.fixture
def api(ws_env: None) -> Iterator[ManagementApiStub]:
    stub = ManagementApiStub()
    yield stub
    stub.close()


def invoke(event: dict[str, Any]) -> dict[str, Any]:
    result = handler(event, LambdaContext(function_name="hopgraph-websocket"))
    assert isinstance(result, dict) and isinstance(result["statusCode"], int), result
    return result


def message(name: str, body: str) -> dict[str, Any]:
    event = load_event(name)
    event["body"] = body
    return event


def connect(query: dict[str, str] | None = None) -> dict[str, Any]:
    event = load_event("ws_connect")
    if query is None:
        del event["queryStringParameters"], event["multiValueQueryStringParameters"]
    else:
        event["queryStringParameters"] = query
        event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
    return invoke(event)


def finish(service: RunService) -> None:
    queue = service.queue
    assert isinstance(queue, MemoryQueue)
    queue.drain(lambda hop: service.process_hop(hop, f"d-{hop.run_id}-{hop.seq}"))


# -- $connect ----------------------------------------------------------------------------------
def test_connect_with_run_id_saves_the_connection_and_subscribes_it(
    service: RunService, api: ManagementApiStub
) -> None:
    # Given a running run
    service.start_run("g_counter", {})
    # When a client connects with ?run_id= (events/ws_connect.json as API Gateway sends it)
    before = int(time.time())
    result = invoke(load_event("ws_connect"))
    # Then the connection is accepted, subscribed, and remembers where to post to it
    assert result["statusCode"] == 200
    [subscriber] = service.store.subscribers(RUN_ID)
    assert subscriber.connection_id == CONNECTION_ID
    assert subscriber.endpoint == ENDPOINT
    assert before + 7200 <= subscriber.expires_at <= int(time.time()) + 7200
    assert api.posts == []  # nothing can be posted before $connect returns


def test_connect_without_run_id_only_saves_the_connection(
    service: RunService, api: ManagementApiStub
) -> None:
    service.start_run("g_counter", {})
    assert connect()["statusCode"] == 200
    assert service.store.subscribers(RUN_ID) == []
    service.store.subscribe(CONNECTION_ID, RUN_ID)  # a saved connection can subscribe
    assert [c.connection_id for c in service.store.subscribers(RUN_ID)] == [CONNECTION_ID]


def test_connect_to_an_unknown_run_is_refused_with_404(
    service: RunService, api: ManagementApiStub
) -> None:
    # When a client connects for a run that does not exist
    result = connect({"run_id": "r_missing"})
    # Then the connection is refused (API Gateway closes it), and nothing is left behind
    assert result["statusCode"] == 404
    assert json.loads(result["body"]) == {
        "type": "error",
        "status": 404,
        "error": "not_found",
        "message": "run 'r_missing' not found",
    }
    with pytest.raises(NotFoundError):
        service.store.subscribe(CONNECTION_ID, RUN_ID)
    assert api.posts == []


def test_connect_with_a_malformed_run_id_is_refused_with_422(service: RunService) -> None:
    result = connect({"run_id": "r" * 500})
    assert result["statusCode"] == 422
    assert "run_id" in json.loads(result["body"])["message"]


def test_connect_uses_the_configured_endpoint_when_there_is_one(
    service: RunService, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a deployment that names its Management API endpoint (a custom domain, say)
    monkeypatch.setenv("HOPGRAPH_WS_ENDPOINT", "https://ws.example.com/v1/")
    get_settings.cache_clear()
    service.start_run("g_counter", {})
    # When a client connects
    invoke(load_event("ws_connect"))
    # Then its connection is posted to there, not to the execute-api domain
    [subscriber] = service.store.subscribers(RUN_ID)
    assert subscriber.endpoint == "https://ws.example.com/v1"


# -- $disconnect -------------------------------------------------------------------------------
def test_disconnect_removes_the_connection_and_its_subscriptions(
    service: RunService, api: ManagementApiStub
) -> None:
    # Given a connection subscribed to two runs
    service.start_run("g_counter", {})
    service.start_run("g_counter", {})
    invoke(load_event("ws_connect"))
    service.store.subscribe(CONNECTION_ID, "r_other")
    # When API Gateway reports it closed
    result = invoke(load_event("ws_disconnect"))
    # Then it is gone from both runs and cannot subscribe any more
    assert result["statusCode"] == 200
    assert service.store.subscribers(RUN_ID) == []
    assert service.store.subscribers("r_other") == []
    with pytest.raises(NotFoundError):
        service.store.subscribe(CONNECTION_ID, RUN_ID)


def test_disconnect_of_an_unknown_connection_is_fine(service: RunService) -> None:
    assert invoke(load_event("ws_disconnect"))["statusCode"] == 200


# -- subscribe ---------------------------------------------------------------------------------
def test_subscribe_to_a_running_run_replays_its_steps_then_its_status(
    service: RunService, api: ManagementApiStub
) -> None:
    # Given a connected client and a run that has taken one step
    service.start_run("g_counter", {})
    queue = service.queue
    assert isinstance(queue, MemoryQueue)
    queue.drain(lambda hop: service.process_hop(hop, "d-0"), limit=1)
    connect()
    api.expect_posts(2)
    # When it subscribes (events/ws_subscribe.json)
    result = invoke(load_event("ws_subscribe"))
    # Then it is subscribed, gets the committed step, and is told where the run stands,
    # through the Management API
    assert result["statusCode"] == 200
    assert [c.connection_id for c in service.store.subscribers(RUN_ID)] == [CONNECTION_ID]
    [step, status] = api.messages()
    assert (step["type"], step["seq"], step["updates"]) == ("step", 0, {"count": 1})
    assert status["type"] == "run" and status["run_id"] == RUN_ID
    assert status["status"] == "running" and status["steps"] == 1
    assert "state" not in status
    api.stubber.assert_no_pending_responses()


def test_subscribe_to_a_finished_run_replays_it_and_replies_with_its_final_state(
    service: RunService, api: ManagementApiStub
) -> None:
    # Given a run that already completed
    service.start_run("g_counter", {})
    finish(service)
    connect()
    api.expect_posts(4)
    # When a client subscribes late
    invoke(load_event("ws_subscribe"))
    # Then it gets every step, then the final event, with the final state
    *steps, final = api.messages()
    assert [(e["type"], e["seq"]) for e in steps] == [("step", 0), ("step", 1), ("step", 2)]
    assert final["type"] == "run" and final["status"] == "completed"
    assert final["state"] == {"count": 3} and final["steps"] == 3


def test_subscribe_to_an_unknown_run_replies_with_an_error(
    service: RunService, api: ManagementApiStub
) -> None:
    connect()
    api.expect_posts(1)
    result = invoke(message("ws_subscribe", '{"action": "subscribe", "run_id": "r_nope"}'))
    assert result["statusCode"] == 404
    assert api.messages() == [
        {
            "type": "error",
            "status": 404,
            "error": "not_found",
            "message": "run 'r_nope' not found",
            "action": "subscribe",
            "run_id": "r_nope",
        }
    ]
    assert service.store.subscribers("r_nope") == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"action": "subscribe"}', '"run_id" must be a non-empty string'),
        ('{"action": "subscribe", "run_id": 42}', '"run_id" must be a non-empty string'),
        ('{"action": "subscribe", "run_id": ""}', '"run_id" must be a non-empty string'),
    ],
)
def test_subscribe_without_a_usable_run_id_replies_with_an_error(
    service: RunService, api: ManagementApiStub, body: str, expected: str
) -> None:
    connect()
    api.expect_posts(1)
    result = invoke(message("ws_subscribe", body))
    assert result["statusCode"] == 422
    assert api.messages() == [
        {
            "type": "error",
            "status": 422,
            "error": "invalid_input",
            "message": expected,
            "action": "subscribe",
        }
    ]


def test_subscribe_from_a_connection_never_saved_replies_with_an_error(
    service: RunService, api: ManagementApiStub
) -> None:
    # Given a run, and a connection whose $connect never reached the store
    service.start_run("g_counter", {})
    api.expect_posts(1)
    # When it subscribes
    result = invoke(load_event("ws_subscribe"))
    # Then it is told, and nothing is subscribed
    assert result["statusCode"] == 404
    [error] = api.messages()
    assert error["type"] == "error" and CONNECTION_ID in error["message"]
    assert service.store.subscribers(RUN_ID) == []


def test_a_reply_to_a_caller_that_is_gone_does_not_fail_the_route(
    service: RunService, api: ManagementApiStub
) -> None:
    service.start_run("g_counter", {})
    connect()
    api.expect_error("GoneException", 410)
    assert invoke(load_event("ws_subscribe"))["statusCode"] == 200
    api.stubber.assert_no_pending_responses()


def test_an_unexpected_failure_replies_internal_error(
    service: RunService, api: ManagementApiStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a store that fails in a way nobody planned for
    service.start_run("g_counter", {})
    connect()

    def broken(connection_id: str, run_id: str) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(service.store, "subscribe", broken)
    api.expect_posts(1)
    # When a client subscribes
    result = invoke(load_event("ws_subscribe"))
    # Then it gets a generic error (no internals), and the handler does not raise
    assert result["statusCode"] == 500
    assert api.messages() == [
        {
            "type": "error",
            "status": 500,
            "error": "internal",
            "message": "internal error",
            "action": "subscribe",
            "run_id": RUN_ID,
        }
    ]


# -- unsubscribe -------------------------------------------------------------------------------
def test_unsubscribe_stops_the_events_and_acknowledges(
    service: RunService, api: ManagementApiStub
) -> None:
    service.start_run("g_counter", {})
    invoke(load_event("ws_connect"))
    api.expect_posts(1)
    result = invoke(load_event("ws_unsubscribe"))
    assert result["statusCode"] == 200
    assert service.store.subscribers(RUN_ID) == []
    assert api.messages() == [{"type": "unsubscribed", "run_id": RUN_ID}]


# -- $default ----------------------------------------------------------------------------------
def test_default_replies_with_an_error_naming_the_unknown_action(
    service: RunService, api: ManagementApiStub
) -> None:
    connect()
    api.expect_posts(1)
    result = invoke(load_event("ws_default"))
    assert result["statusCode"] == 422
    [error] = api.messages()
    assert error["type"] == "error" and error["action"] == "subscribe-all"
    assert error["message"].startswith("unknown action 'subscribe-all'")
    assert '"action": "subscribe"' in error["message"]  # says what would work


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("hello there", "messages must be JSON objects"),
        ("[1, 2]", "messages must be JSON objects"),
        ('{"run_id": "r_1"}', 'the message has no "action"'),
    ],
)
def test_default_replies_to_garbage_with_an_error(
    service: RunService, api: ManagementApiStub, body: str, expected: str
) -> None:
    connect()
    api.expect_posts(1)
    invoke(message("ws_default", body))
    [error] = api.messages()
    assert error["type"] == "error" and error["message"].startswith(expected)


def test_a_binary_frame_reaches_default_and_gets_an_error(
    service: RunService, api: ManagementApiStub
) -> None:
    event = message("ws_default", "3q2+7w==")  # base64 of bytes that are not UTF-8
    event["isBase64Encoded"] = True
    api.expect_posts(1)
    invoke(event)
    assert api.messages() == [
        {
            "type": "error",
            "status": 400,
            "error": "invalid_json",
            "message": "messages must be JSON objects",
        }
    ]


# -- the handler as a whole --------------------------------------------------------------------
def test_an_event_that_is_not_from_a_websocket_api_is_refused(service: RunService) -> None:
    result = invoke({"Records": []})
    assert result["statusCode"] == 400


def test_the_handler_serves_every_route_template_yaml_declares() -> None:
    from infra.template.reader import websocket_routes

    assert sorted(ROUTES) == sorted(websocket_routes())


def test_the_saved_connection_carries_the_connect_endpoint(
    service: RunService, api: ManagementApiStub
) -> None:
    # The notifier posts wherever the connection says: check the record end to end.
    service.start_run("g_counter", {})
    invoke(load_event("ws_connect"))
    [saved] = service.store.subscribers(RUN_ID)
    assert isinstance(saved, Connection)
    assert (saved.connection_id, saved.endpoint) == (CONNECTION_ID, ENDPOINT)


# -- the JSON rule -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("route", "body", "location"),
    [
        ("ws_default", '{"action": "x", "v": %s}' % ("[" * 100 + "]" * 100), "v[0]"),
        ("ws_subscribe", '{"action": "subscribe", "run_id": "r_1", "v": %s}'
         % ("[" * 10_000 + "]" * 10_000), "$"),
        ("ws_default", '{"action": "x", "\\ud800": 1}', "\\ud800"),
        ("ws_subscribe", '{"action": "subscribe", "run_id": "r_\\udc00"}', "run_id"),
    ],
    ids=["default-deep", "subscribe-10000-deep", "default-surrogate-key",
         "subscribe-surrogate-run-id"],
)  # fmt: skip
def test_a_message_breaking_the_json_rule_gets_a_422_reply_saying_where(
    service: RunService, api: ManagementApiStub, route: str, body: str, location: str
) -> None:
    # Given a connected client
    connect()
    api.expect_posts(1)
    # When it sends a message nested too deep, or with a lone surrogate
    result = invoke(message(route, body))
    # Then it is told, with the same status and kind an HTTP client would get, and where
    assert result["statusCode"] == 422
    [error] = api.messages()
    assert (error["type"], error["status"], error["error"]) == ("error", 422, "invalid_input")
    assert error["message"].startswith(location)
    assert "nested deeper than 64" in error["message"] or "not valid Unicode" in error["message"]
    assert service.store.subscribers(RUN_ID) == []


# -- $connect's replay ---------------------------------------------------------------------------
class LambdaStub:
    """The Lambda client the WebSocket function invokes itself with: records each Invoke."""

    def __init__(self) -> None:
        self.client = boto3.client(
            "lambda", region_name=REGION,
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        self.stubber = Stubber(self.client)
        self.invoked: list[dict[str, Any]] = []
        self.client.meta.events.register("before-parameter-build.lambda.Invoke", self._record)
        clients.override("lambda", self.client)
        self.stubber.activate()

    def _record(self, params: dict[str, Any], **_: Any) -> None:
        self.invoked.append(params)

    def expect_invoke(self) -> None:
        self.stubber.add_response("invoke", {"StatusCode": 202}, None)


def test_connect_with_run_id_asks_for_the_replay_once_the_connection_is_up(
    service: RunService, api: ManagementApiStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a finished run, and the function's own name in its environment (template.yaml)
    service.start_run("g_counter", {})
    finish(service)
    monkeypatch.setenv("HOPGRAPH_WEBSOCKET_FUNCTION", "stack-websocket")
    get_settings.cache_clear()
    lambda_api = LambdaStub()
    lambda_api.expect_invoke()
    # When a client connects with ?run_id= and ?after=0
    result = connect({"run_id": RUN_ID, "after": "0"})
    # Then nothing is posted yet, and the function invokes itself, asynchronously, for it
    assert result["statusCode"] == 200 and api.posts == []
    [invoked] = lambda_api.invoked
    assert (invoked["FunctionName"], invoked["InvocationType"]) == ("stack-websocket", "Event")
    replay = json.loads(invoked["Payload"])
    assert replay["hopgraph_replay"]["run_id"] == RUN_ID
    assert replay["hopgraph_replay"]["after"] == 0

    # When that invocation runs, and the connection is not open at first (API Gateway: 410)
    api.stubber.add_client_error("get_connection", "GoneException", http_status_code=410)
    api.stubber.add_response("get_connection", {}, {"ConnectionId": CONNECTION_ID})
    api.expect_posts(3)
    assert handler(replay, LambdaContext())["statusCode"] == 200
    # Then, once open, it gets the steps after 0 from the log, then the final event
    *steps, final = api.messages()
    assert [(e["type"], e["seq"]) for e in steps] == [("step", 1), ("step", 2)]
    assert (final["type"], final["status"]) == ("run", "completed")


def test_a_replay_for_a_connection_that_never_opens_gives_up(
    service: RunService, api: ManagementApiStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a replay whose client went away before its connection opened
    service.start_run("g_counter", {})
    connect({"run_id": RUN_ID})
    monkeypatch.setattr("functions.websocket.routes.OPEN_WAIT_S", 0.0)
    api.stubber.add_client_error("get_connection", "GoneException", http_status_code=410)
    spec = {"connection_id": CONNECTION_ID, "domain_name": "", "stage": "prod", "run_id": RUN_ID}
    # When it runs, it posts nothing and ends
    assert handler({"hopgraph_replay": spec}, LambdaContext())["statusCode"] == 200
    assert api.posts == []
