"""The local WebSocket gateway behaves like API Gateway's WebSocket API, over real sockets.

A recording handler stands in for the Lambda, so what the gateway hands it (events) and
does with its answers (handshake status, route responses, errors) can be checked; boto3's
own ``apigatewaymanagementapi`` client talks to the @connections API.
"""

from __future__ import annotations

import base64
import json
import queue
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from infra.gateway.ws_gateway import LocalWebSocketGateway

pytestmark = pytest.mark.e2e
TIMEOUT = 5.0


class RecordingHandler:
    """A WebSocket Lambda that records its events and answers as a test tells it."""

    def __init__(self) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.answers: dict[str, Any] = {}
        self.failures: set[str] = set()
        self.on_connect: Any = None

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        self.events.put(event)
        route = event["requestContext"]["routeKey"]
        if route in self.failures:
            raise RuntimeError(f"{route} failed")
        if route == "$connect" and self.on_connect is not None:
            self.on_connect(event)
        return self.answers.get(route, {"statusCode": 200})

    def next_event(self, route: str | None = None) -> dict[str, Any]:
        """The next event (of ``route``, skipping others)."""
        while True:
            event = self.events.get(timeout=TIMEOUT)
            if route is None or event["requestContext"]["routeKey"] == route:
                return event


@pytest.fixture(scope="module")
def recording() -> RecordingHandler:
    return RecordingHandler()


@pytest.fixture(scope="module")
def ws_gateway(recording: RecordingHandler) -> Iterator[LocalWebSocketGateway]:
    with LocalWebSocketGateway(
        recording, routes=["subscribe", "echo"], two_way_routes=["echo"], stage="test"
    ) as gateway:
        yield gateway


@pytest.fixture(autouse=True)
def fresh(recording: RecordingHandler, ws_gateway: LocalWebSocketGateway) -> Iterator[None]:
    """Each test starts with a handler that accepts everything and no open connection."""
    recording.answers.clear()
    recording.failures.clear()
    recording.on_connect = None
    yield
    assert ws_gateway.wait_idle(TIMEOUT), "a connection was left open"
    while not recording.events.empty():
        recording.events.get_nowait()


@pytest.fixture
def management(ws_gateway: LocalWebSocketGateway) -> Any:
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=ws_gateway.management_endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def open_socket(gateway: LocalWebSocketGateway, query: str = "") -> ClientConnection:
    return connect(gateway.url + query, open_timeout=TIMEOUT, close_timeout=TIMEOUT)


def connected(
    gateway: LocalWebSocketGateway, recording: RecordingHandler, query: str = ""
) -> tuple[ClientConnection, str]:
    """An open socket and its connection id (from the $connect event)."""
    socket = open_socket(gateway, query)
    event = recording.next_event("$connect")
    return socket, event["requestContext"]["connectionId"]


# -- events ------------------------------------------------------------------------------------
def test_connect_event_carries_query_headers_and_where_to_post(
    ws_gateway: LocalWebSocketGateway, recording: RecordingHandler
) -> None:
    with open_socket(ws_gateway, "?run_id=r_1&tag=a&tag=b"):
        event = recording.next_event("$connect")
    context = event["requestContext"]
    assert context["eventType"] == "CONNECT" and context["messageDirection"] == "IN"
    assert context["stage"] == "test" and context["apiId"] == "local"
    assert context["domainName"] == f"{ws_gateway.host}:{ws_gateway.port}"
    assert len(context["connectionId"]) == 16 and context["connectionId"].endswith("=")
    assert isinstance(context["connectedAt"], int) and isinstance(context["requestTimeEpoch"], int)
    assert event["queryStringParameters"] == {"run_id": "r_1", "tag": "b"}
    assert event["multiValueQueryStringParameters"]["tag"] == ["a", "b"]
    assert event["headers"]["X-Forwarded-Proto"] == "http"
    assert event["headers"]["Host"] == context["domainName"]
    assert event["isBase64Encoded"] is False


@pytest.mark.parametrize(
    ("frame", "route"),
    [
        ('{"action": "subscribe", "run_id": "r_1"}', "subscribe"),
        ('{"action": "unheard-of"}', "$default"),
        ('{"action": "$connect"}', "$default"),
        ('{"run_id": "r_1"}', "$default"),
        ('["action", "subscribe"]', "$default"),
        ("not json at all", "$default"),
    ],
)
def test_messages_are_routed_on_their_action(
    ws_gateway: LocalWebSocketGateway, recording: RecordingHandler, frame: str, route: str
) -> None:
    socket, connection_id = connected(ws_gateway, recording)
    with socket:
        socket.send(frame)
        event = recording.next_event()
    context = event["requestContext"]
    assert context["routeKey"] == route and context["eventType"] == "MESSAGE"
    assert context["connectionId"] == connection_id and context["messageId"]
    assert event["body"] == frame and event["isBase64Encoded"] is False


def test_a_binary_frame_reaches_default_base64_encoded(
    ws_gateway: LocalWebSocketGateway, recording: RecordingHandler
) -> None:
    socket, _ = connected(ws_gateway, recording)
    with socket:
        socket.send(b"\x00\xffbinary")
        event = recording.next_event()
    assert event["requestContext"]["routeKey"] == "$default"
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\x00\xffbinary"


def test_disconnect_event_follows_the_close_with_its_code(
    ws_gateway: LocalWebSocketGateway, recording: RecordingHandler
) -> None:
    socket, connection_id = connected(ws_gateway, recording)
    with socket:
        socket.close(code=4001, reason="bye")
    event = recording.next_event("$disconnect")
    context = event["requestContext"]
    assert context["connectionId"] == connection_id and context["eventType"] == "DISCONNECT"
    assert context["disconnectStatusCode"] == 4001 and context["disconnectReason"] == "bye"
    assert ws_gateway.wait_disconnected(connection_id, TIMEOUT)
    assert connection_id not in ws_gateway.connection_ids()


# -- $connect answers --------------------------------------------------------------------------
@pytest.mark.parametrize("status", [401, 403, 404])
def test_a_connect_handler_refusing_closes_with_its_status(
    ws_gateway: LocalWebSocketGateway, recording: RecordingHandler, status: int
) -> None:
    recording.answers["$connect"] = {"statusCode": status, "body": '{"message": "no"}'}
    with pytest.raises(InvalidStatus) as refused:
        open_socket(ws_gateway)
    assert refused.value.response.status_code == status
    assert ws_gateway.connection_ids() == []


def test_a_connect_handler_that_raises_refuses_with_500(
    ws_gateway: LocalWebSocketGateway, recording: RecordingHandler
) -> None:
    recording.failures.add("$connect")
    with pytest.raises(InvalidStatus) as refused:
        open_socket(ws_gateway)
    assert refused.value.response.status_code == 500


def test_a_path_that_is_not_the_stage_is_forbidden(
    ws_gateway: LocalWebSocketGateway,
) -> None:
    url = f"ws://{ws_gateway.host}:{ws_gateway.port}/other-stage"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, open_timeout=TIMEOUT)
    assert refused.value.response.status_code == 403


def test_the_root_path_is_accepted_too(
    ws_gateway: LocalWebSocketGateway, recording: RecordingHandler
) -> None:
    # The command line's default URL (ws://127.0.0.1:8001) names no stage.
    with connect(f"ws://{ws_gateway.host}:{ws_gateway.port}", open_timeout=TIMEOUT):
        event = recording.next_event("$connect")
    assert event["requestContext"]["stage"] == "test"


def test_posting_during_connect_is_gone(
    ws_gateway: LocalWebSocketGateway, recording: RecordingHandler, management: Any
) -> None:
    # Given a $connect handler that tries to greet the client at once (API Gateway says 410)
    outcome: list[str] = []

    def greet(event: dict[str, Any]) -> None:
        try:
            management.post_to_connection(
                ConnectionId=event["requestContext"]["connectionId"], Data=b"hi"
            )
            outcome.append("posted")
        except management.exceptions.GoneException:
            outcome.append("gone")

    recording.on_connect = greet
    # When a client connects
    with open_socket(ws_gateway):
        pass
    # Then the post was refused as gone, and the connection still opened
    assert outcome == ["gone"]


# -- message answers ---------------------------------------------------------------------------
def test_only_two_way_routes_send_their_return_body(
    ws_gateway: LocalWebSocketGateway, recording: RecordingHandler
) -> None:
    recording.answers["subscribe"] = {"statusCode": 200, "body": "one-way: never sent"}
    recording.answers["echo"] = {"statusCode": 200, "body": "two-way: sent"}
    socket, _ = connected(ws_gateway, recording)
    with socket:
        socket.send('{"action": "subscribe"}')
        socket.send('{"action": "echo"}')
        assert socket.recv(timeout=TIMEOUT) == "two-way: sent"


def test_a_message_handler_that_raises_gets_internal_server_error_and_stays_open(
    ws_gateway: LocalWebSocketGateway, recording: RecordingHandler
) -> None:
    recording.failures.add("subscribe")
    recording.answers["echo"] = {"statusCode": 200, "body": "still here"}
    socket, connection_id = connected(ws_gateway, recording)
    with socket:
        socket.send('{"action": "subscribe"}')
        error = json.loads(socket.recv(timeout=TIMEOUT))
        socket.send('{"action": "echo"}')
        assert socket.recv(timeout=TIMEOUT) == "still here"
    assert error["message"] == "Internal server error"
    assert error["connectionId"] == connection_id and error["requestId"]


def test_a_client_message_over_128_kb_closes_the_connection_with_1009(
    ws_gateway: LocalWebSocketGateway, recording: RecordingHandler
) -> None:
    socket, connection_id = connected(ws_gateway, recording)
    with socket:
        socket.send("x" * (128 * 1024 + 1))
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=TIMEOUT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert recording.next_event("$disconnect")["requestContext"]["connectionId"] == connection_id


# -- the Management API ------------------------------------------------------------------------
def test_post_to_connection_reaches_the_socket_as_text(
    ws_gateway: LocalWebSocketGateway, recording: RecordingHandler, management: Any
) -> None:
    socket, connection_id = connected(ws_gateway, recording)
    with socket:
        for n in range(3):
            management.post_to_connection(ConnectionId=connection_id, Data=f'{{"n": {n}}}')
        received = [socket.recv(timeout=TIMEOUT) for _ in range(3)]
    assert received == ['{"n": 0}', '{"n": 1}', '{"n": 2}']


def test_get_connection_describes_it(
    ws_gateway: LocalWebSocketGateway, recording: RecordingHandler, management: Any
) -> None:
    socket, connection_id = connected(ws_gateway, recording)
    with socket:
        described = management.get_connection(ConnectionId=connection_id)
    assert described["Identity"]["SourceIp"] == "127.0.0.1"
    assert "websockets" in described["Identity"]["UserAgent"]
    assert described["LastActiveAt"] >= described["ConnectedAt"]


def test_delete_connection_closes_the_socket_and_fires_disconnect(
    ws_gateway: LocalWebSocketGateway, recording: RecordingHandler, management: Any
) -> None:
    socket, connection_id = connected(ws_gateway, recording)
    with socket:
        management.delete_connection(ConnectionId=connection_id)
        with pytest.raises(ConnectionClosed):
            socket.recv(timeout=TIMEOUT)
    assert recording.next_event("$disconnect")["requestContext"]["connectionId"] == connection_id
    with pytest.raises(management.exceptions.GoneException):
        management.post_to_connection(ConnectionId=connection_id, Data=b"late")


def test_an_unknown_connection_is_gone(management: Any) -> None:
    for call in (
        lambda: management.post_to_connection(ConnectionId="AAAAAAAAAAAAAAA=", Data=b"{}"),
        lambda: management.get_connection(ConnectionId="AAAAAAAAAAAAAAA="),
        lambda: management.delete_connection(ConnectionId="AAAAAAAAAAAAAAA="),
    ):
        with pytest.raises(management.exceptions.GoneException) as gone:
            call()
        assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410


def test_a_post_over_128_kb_is_too_large(
    ws_gateway: LocalWebSocketGateway, recording: RecordingHandler, management: Any
) -> None:
    # Given an open connection
    socket, connection_id = connected(ws_gateway, recording)
    with socket:
        # When a message of one byte over 128 KB is posted, then one of exactly 128 KB
        with pytest.raises(management.exceptions.PayloadTooLargeException) as refused:
            management.post_to_connection(ConnectionId=connection_id, Data=b"x" * (131_072 + 1))
        management.post_to_connection(ConnectionId=connection_id, Data=b"x" * 131_072)
        # Then the first is refused as API Gateway refuses it (413), and the second arrives
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
        assert len(socket.recv(timeout=TIMEOUT)) == 131_072
