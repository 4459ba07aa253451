"""Live run progress end to end: WebSocket clients, the local gateway, the WebSocket Lambda
handler, and a run service whose ApiGatewayNotifier posts through boto3 to @connections.

Hops are processed in the test's thread, one at a time, so a test decides exactly when each
step commits; everything a client receives is awaited with a timeout, never slept for.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from engine.events import MESSAGE_LIMIT
from engine.memory import MemoryQueue, MemoryRunStore
from engine.ports import Connection
from engine.service import RunService
from engine.tools import load_toolkits
from functions import runtime
from functions.auth import authorizer
from functions.aws import clients
from functions.aws.notifier import ApiGatewayNotifier
from functions.settings import get_settings
from infra.cli.client import with_token
from infra.gateway.ws_authorizer import ConnectAuthorizer, identity_sources
from infra.gateway.ws_gateway import LocalWebSocketGateway
from infra.template.reader import load_template
from tests import auth_tokens

pytestmark = pytest.mark.e2e
TIMEOUT = 5.0
USER = "alice"
"""Who owns the runs, and connects."""
COUNTER = {
    "name": "counter",
    "entry": "inc",
    "nodes": {"inc": {"tool": "increment"}},
    "edges": {},
    "branches": {"inc": {"cases": [{"when": "count >= 3", "to": "END"}], "default": "inc"}},
}
BIG_PARTS = {f"part{i}": "r" * 50_000 for i in range(4)}
"""200 KB in values of 50 KB: each under the 64 KB a value may have before it travels as its
pointer (engine/blobs.py), so the event itself must be cut down."""
BIG = {
    "name": "big",
    "entry": "report",
    "nodes": {"report": {"tool": "set_values", "settings": {"values": BIG_PARTS}}},
    "edges": {"report": "END"},
}


@dataclass
class Stack:
    service: RunService
    store: MemoryRunStore
    queue: MemoryQueue
    counter: str
    big: str

    def start(self, graph_id: str | None = None) -> str:
        run, _ = self.service.start_run(graph_id or self.counter, {}, owner=USER)
        return run.run_id

    def step(self, hops: int = 1) -> None:
        """Process the next ``hops`` hops, as workers would."""
        self.queue.drain(lambda hop: self.service.process_hop(hop, f"d-{hop.seq}"), limit=hops)

    def finish(self) -> None:
        self.step(hops=1_000)


@pytest.fixture(scope="module")
def ws_gateway() -> Iterator[LocalWebSocketGateway]:
    """The gateway in front of the real handler (functions.websocket.handler.handler), with
    the real ``$connect`` authorizer trusting the test issuer."""
    authorizer.install(auth_tokens.issuer().verifier())
    connect_authorizer = ConnectAuthorizer(authorizer.handler, identity_sources(load_template()))
    with LocalWebSocketGateway(authorizer=connect_authorizer) as gateway:
        yield gateway
    authorizer.install(None)


@pytest.fixture
def stack(ws_gateway: LocalWebSocketGateway, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    # The handler's environment, as the local stack sets it: the Management API is the
    # gateway's (on AWS, template.yaml names the deployed stage's); never a real account.
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOPGRAPH_WS_ENDPOINT", ws_gateway.management_endpoint)
    monkeypatch.setenv("HOPGRAPH_TABLE", "hopgraph-e2e")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    get_settings.cache_clear()
    clients.reset()
    store, queue = MemoryRunStore(), MemoryQueue()
    service = RunService(
        store,
        queue,
        load_toolkits(["engine.toolkits.basics"]),
        notifier=ApiGatewayNotifier(store),
    )
    counter, _ = service.create_graph(COUNTER)
    big, _ = service.create_graph(BIG)
    runtime.install(service)
    yield Stack(service, store, queue, counter.graph_id, big.graph_id)
    # Every socket is closed by now; let their $disconnect run before the service goes.
    assert ws_gateway.wait_idle(TIMEOUT), "a connection was left open"
    runtime.install(None)
    get_settings.cache_clear()
    clients.reset()


def client(gateway: LocalWebSocketGateway, query: str = "") -> ClientConnection:
    """A connection of the runs' owner (its token in ``?token=``)."""
    url = with_token(gateway.url + query, auth_tokens.token(USER))
    return connect(url, open_timeout=TIMEOUT, close_timeout=TIMEOUT)


def receive(socket: ClientConnection) -> dict[str, Any]:
    message = json.loads(socket.recv(timeout=TIMEOUT))
    assert isinstance(message, dict)
    return message


def subscribe(socket: ClientConnection, run_id: str) -> dict[str, Any]:
    """Subscribe and return the reply (the run's status, or an error)."""
    socket.send(json.dumps({"action": "subscribe", "run_id": run_id}))
    return receive(socket)


def until_final(socket: ClientConnection) -> list[dict[str, Any]]:
    """Every event up to and including the run's final event."""
    events: list[dict[str, Any]] = []
    while not events or not (events[-1]["type"] == "run" and events[-1]["status"] != "running"):
        events.append(receive(socket))
    return events


def summary(events: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [(e["type"], e["seq"] if e["type"] == "step" else e["status"]) for e in events]


COUNTER_EVENTS = [("step", 0), ("step", 1), ("step", 2), ("run", "completed")]


def test_a_subscriber_gets_every_step_in_order_then_the_final_state(
    ws_gateway: LocalWebSocketGateway, stack: Stack
) -> None:
    # Given a client subscribed to a run that has not stepped yet
    run_id = stack.start()
    with client(ws_gateway) as socket:
        status = subscribe(socket, run_id)
        # When the run's hops are processed
        stack.finish()
        events = until_final(socket)
    # Then the client was told the run is running, then saw each step and the end
    assert (status["type"], status["status"], status["steps"]) == ("run", "running", 0)
    assert summary(events) == COUNTER_EVENTS
    assert [e["updates"] for e in events[:3]] == [{"count": 1}, {"count": 2}, {"count": 3}]
    assert events[-1]["state"] == {"count": 3} and events[-1]["steps"] == 3
    assert all(e["run_id"] == run_id for e in events)


def test_two_subscribers_of_one_run_get_the_same_events(
    ws_gateway: LocalWebSocketGateway, stack: Stack
) -> None:
    run_id = stack.start()
    with client(ws_gateway) as first, client(ws_gateway) as second:
        subscribe(first, run_id)
        subscribe(second, run_id)
        stack.finish()
        seen_first, seen_second = until_final(first), until_final(second)
    assert summary(seen_first) == COUNTER_EVENTS
    assert seen_second == seen_first


def test_a_subscriber_that_leaves_mid_run_is_cleaned_up_and_the_run_goes_on(
    ws_gateway: LocalWebSocketGateway, stack: Stack
) -> None:
    # Given two subscribers, and a run one step in
    run_id = stack.start()
    with client(ws_gateway) as staying:
        subscribe(staying, run_id)  # answered: the gateway has registered the connection
        [staying_id] = ws_gateway.connection_ids()
        with client(ws_gateway) as leaving:
            subscribe(leaving, run_id)
            [leaving_id] = set(ws_gateway.connection_ids()) - {staying_id}
            stack.step()
            assert summary([receive(leaving)]) == [("step", 0)]
        # When one of them disconnects
        assert ws_gateway.wait_disconnected(leaving_id, TIMEOUT)
        # Then it is no longer a subscriber, and the run goes on for the other
        assert leaving_id not in {c.connection_id for c in stack.store.subscribers(run_id)}
        stack.finish()
        assert summary(until_final(staying)) == COUNTER_EVENTS
    assert stack.store.get_run(run_id).status == "completed"


def test_a_connection_gone_without_a_disconnect_is_dropped_at_the_next_event(
    ws_gateway: LocalWebSocketGateway, stack: Stack
) -> None:
    # Given a subscription whose connection closed without $disconnect reaching the store
    run_id = stack.start()
    ghost = Connection("GhostConnAAAAAA=", ws_gateway.management_endpoint, int(time.time()) + 60)
    stack.store.save_connection(ghost)
    stack.store.subscribe(ghost.connection_id, run_id)
    with client(ws_gateway) as socket:
        subscribe(socket, run_id)
        # When the run steps (the gateway answers the ghost's posts with 410 Gone)
        stack.finish()
        events = until_final(socket)
    # Then the ghost is forgotten, and the live subscriber missed nothing
    assert summary(events) == COUNTER_EVENTS
    subscribers = {c.connection_id for c in stack.store.subscribers(run_id)}
    assert ghost.connection_id not in subscribers


def test_subscribing_after_the_run_finished_replays_it_then_gives_the_final_state(
    ws_gateway: LocalWebSocketGateway, stack: Stack
) -> None:
    run_id = stack.start()
    stack.finish()
    with client(ws_gateway) as socket:
        socket.send(json.dumps({"action": "subscribe", "run_id": run_id}))
        events = until_final(socket)
    assert summary(events) == COUNTER_EVENTS
    assert (events[-1]["steps"], events[-1]["state"]) == (3, {"count": 3})


def test_connecting_with_run_id_subscribes_at_once(
    ws_gateway: LocalWebSocketGateway, stack: Stack
) -> None:
    run_id = stack.start()
    with client(ws_gateway, f"?run_id={run_id}") as socket:
        stack.finish()
        events = until_final(socket)
    assert summary(events) == COUNTER_EVENTS


def test_connecting_with_an_unknown_run_id_is_refused_with_404(
    ws_gateway: LocalWebSocketGateway, stack: Stack
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        client(ws_gateway, "?run_id=r_nope")
    assert refused.value.response.status_code == 404


def test_subscribing_to_an_unknown_run_gets_an_error_reply(
    ws_gateway: LocalWebSocketGateway, stack: Stack
) -> None:
    with client(ws_gateway) as socket:
        error = subscribe(socket, "r_nope")
    assert error == {
        "type": "error",
        "status": 404,
        "error": "not_found",
        "message": "run 'r_nope' not found",
        "action": "subscribe",
        "run_id": "r_nope",
    }


def test_garbage_gets_an_error_reply_and_the_connection_stays_open(
    ws_gateway: LocalWebSocketGateway, stack: Stack
) -> None:
    run_id = stack.start()
    with client(ws_gateway) as socket:
        socket.send("}}} not json")
        error = receive(socket)
        socket.send(json.dumps({"action": "dance"}))
        unknown = receive(socket)
        status = subscribe(socket, run_id)  # the same connection still works
    assert error == {
        "type": "error",
        "status": 400,
        "error": "invalid_json",
        "message": "messages must be JSON objects",
    }
    assert unknown["type"] == "error" and unknown["action"] == "dance"
    assert unknown["message"].startswith("unknown action 'dance'")
    assert (status["type"], status["status"]) == ("run", "running")


def test_unsubscribing_stops_the_events(ws_gateway: LocalWebSocketGateway, stack: Stack) -> None:
    run_id = stack.start()
    with client(ws_gateway) as socket:
        subscribe(socket, run_id)
        stack.step()
        first = receive(socket)
        socket.send(json.dumps({"action": "unsubscribe", "run_id": run_id}))
        ack = receive(socket)
        stack.finish()
        # Frames arrive in order: if any later step had been sent, it would come first.
        socket.send("probe")
        after = receive(socket)
    assert summary([first]) == [("step", 0)]
    assert ack == {"type": "unsubscribed", "run_id": run_id}
    assert after["type"] == "error"


def test_events_too_large_for_a_frame_arrive_cut_down(
    ws_gateway: LocalWebSocketGateway, stack: Stack
) -> None:
    # Given a run whose only step writes 200 KB (over API Gateway's 128 KB message limit)
    run_id = stack.start(stack.big)
    with client(ws_gateway) as socket:
        subscribe(socket, run_id)
        stack.finish()
        raw = [socket.recv(timeout=TIMEOUT) for _ in range(2)]
    # Then both its step event and the final event arrived, each cut down to fit (the
    # gateway refuses a larger post, as API Gateway does)
    step, final = (json.loads(r) for r in raw)
    assert all(len(r.encode()) <= MESSAGE_LIMIT for r in raw)
    assert step["truncated"] == ["updates"]
    assert step["fetch"] == f"/runs/{run_id}/steps?after=-1&limit=1"
    cut = [v for v in step["updates"].values() if isinstance(v, dict)]
    assert cut and all(v["truncated"] for v in cut)  # the largest values, until it fits
    assert sorted(step["updates"]) == sorted(BIG_PARTS)
    assert final["status"] == "completed" and final["truncated"] == ["state"]
    assert final["fetch"] == f"/runs/{run_id}"
    state = stack.store.get_run(run_id).state
    assert {k: state[k] for k in BIG_PARTS} == BIG_PARTS  # nothing lost
