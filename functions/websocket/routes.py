"""The WebSocket routes: keep connections and subscriptions in the store, answer the caller.

Each route takes a :class:`WsRequest` and returns the Lambda proxy response; errors are left
to :func:`functions.websocket.replies.errors_as_replies`.
"""

from __future__ import annotations

import time
from typing import Any

from engine.errors import InvalidInputError, RunNotFound
from engine.events import run_status_event
from engine.ports import Connection, RunStore
from functions.websocket.replies import (
    CONNECT,
    DISCONNECT,
    Response,
    Route,
    errors_as_replies,
    ok,
    reply,
)
from functions.websocket.request import WsRequest, checked_run_id

SUBSCRIBE = "subscribe"
UNSUBSCRIBE = "unsubscribe"
DEFAULT = "$default"
USAGE = (
    'send {"action": "subscribe", "run_id": "..."} to receive a run\'s events, '
    '{"action": "unsubscribe", "run_id": "..."} to stop'
)


def _store() -> RunStore:
    from functions.runtime import store  # deferred: built on first use, without the toolkits

    return store()


def _settings() -> Any:
    from functions.settings import get_settings

    return get_settings()


@errors_as_replies
def connect(request: WsRequest) -> Response:
    """Record the connection (with a TTL, so a missed ``$disconnect`` does not leave it behind
    for ever); ``?run_id=`` subscribes it at once, and an unknown run refuses it (404).

    A run's current status cannot be sent here (the connection is not open yet); a client
    that needs it sends ``subscribe`` once connected (subscribing again is harmless)."""
    settings = _settings()
    store = _store()
    run_id = request.query.get("run_id")
    if run_id is not None:
        store.get_run(checked_run_id(run_id))  # RunNotFound refuses the connection
    expires_at = int(time.time()) + settings.connection_ttl_seconds
    endpoint = request.endpoint(settings.ws_endpoint)
    store.save_connection(Connection(request.connection_id, endpoint, expires_at))
    if run_id is not None:
        store.subscribe(request.connection_id, run_id)
    return ok()


@errors_as_replies
def disconnect(request: WsRequest) -> Response:
    """Forget the connection and all its subscriptions."""
    _store().delete_connection(request.connection_id)
    return ok()


@errors_as_replies
def subscribe(request: WsRequest) -> Response:
    """Subscribe the caller to a run and send it where the run stands now.

    The subscription is written before the run is read: a step that commits in between is
    in the snapshot or reaches the caller as an event (or both), never neither. A run that
    has ended answers with its final event, so a late subscriber does not wait in vain."""
    run_id = request.run_id()
    store = _store()
    store.subscribe(request.connection_id, run_id)
    try:
        run = store.get_run(run_id)
    except RunNotFound:
        store.unsubscribe(request.connection_id, run_id)
        raise
    reply(request, run_status_event(run, time.time()))
    return ok()


@errors_as_replies
def unsubscribe(request: WsRequest) -> Response:
    """Stop sending a run's events to the caller (not subscribed: nothing to do)."""
    run_id = request.run_id()
    _store().unsubscribe(request.connection_id, run_id)
    reply(request, {"type": "unsubscribed", "run_id": run_id})
    return ok()


@errors_as_replies
def default(request: WsRequest) -> Response:
    """Anything else: a JSON error reply, and the connection stays open."""
    action = request.message().get("action")  # not JSON: InvalidInputError says so
    if action is None:
        raise InvalidInputError(f'the message has no "action"; {USAGE}')
    raise InvalidInputError(f"unknown action {action!r}; {USAGE}")


BY_ROUTE_KEY: dict[str, Route] = {
    CONNECT: connect,
    DISCONNECT: disconnect,
    SUBSCRIBE: subscribe,
    UNSUBSCRIBE: unsubscribe,
    DEFAULT: default,
}
