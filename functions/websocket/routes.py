"""The WebSocket routes: keep connections and subscriptions in the store, answer the caller.

Each route takes a :class:`WsRequest` and returns the Lambda proxy response; errors are left
to :func:`functions.websocket.replies.errors_as_replies`.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from engine.errors import InvalidInputError, RunNotFound
from engine.events import logged_step_event, run_status_event
from engine.ports import Connection, RunStore
from functions.auth.caller import Caller
from functions.websocket.replies import (
    CONNECT,
    DISCONNECT,
    Response,
    Route,
    errors_as_replies,
    ok,
    reply,
)
from functions.websocket.request import WsRequest, checked_after, checked_run_id

log = logging.getLogger("hopgraph.websocket")

SUBSCRIBE = "subscribe"
UNSUBSCRIBE = "unsubscribe"
DEFAULT = "$default"
REPLAY_PAGE_SIZE = 100
"""Steps read per page of a replay (each page is posted before the next is read)."""
USAGE = (
    'send {"action": "subscribe", "run_id": "..."} to receive a run\'s events (its committed '
    'steps first; add "after": seq to start later), '
    '{"action": "unsubscribe", "run_id": "..."} to stop'
)


def _store() -> RunStore:
    from functions.runtime import store  # deferred: built on first use, without the toolkits

    return store()


def _settings() -> Any:
    from functions.settings import get_settings

    return get_settings()


UNAUTHORIZED: Response = {"statusCode": 401, "body": json.dumps({"message": "Unauthorized"})}
"""``$connect`` without an identity: API Gateway's own refusal (on AWS its authorizer runs
first, so this is a misconfigured API, refused rather than served anonymously)."""


def visible_run(store: RunStore, caller: Caller, run_id: str) -> None:
    """Nothing if ``caller`` may see the run; RunNotFound, the unknown run's very error,
    for another owner's (its existence is not revealed)."""
    run = store.get_run_header(run_id)  # whose it is; not its state
    if not caller.sees(run.owner):
        raise RunNotFound(run_id)


@errors_as_replies
def connect(request: WsRequest) -> Response:
    """Record the connection and who opened it (with a TTL, so a missed ``$disconnect`` does
    not leave it behind for ever); ``?run_id=`` subscribes it at once, and an unknown run, or
    another owner's, refuses it (404).

    Nothing can be posted here (API Gateway opens the connection once this route returns), so
    for ``?run_id=`` it asks this function, asynchronously, to replay the run once the
    connection is up (:func:`replay_once_open`): the committed steps (after ``?after=``),
    then the run's status, as ``subscribe`` does."""
    caller = request.caller()
    if caller is None:
        return UNAUTHORIZED
    settings = _settings()
    store = _store()
    run_id = request.query.get("run_id")
    if run_id is not None:
        visible_run(store, caller, checked_run_id(run_id))  # RunNotFound refuses it
    expires_at = int(time.time()) + settings.connection_ttl_seconds
    endpoint = request.endpoint(settings.ws_endpoint)
    connection = Connection(
        request.connection_id, endpoint, expires_at, owner=caller.sub, admin=caller.admin
    )
    store.save_connection(connection)
    if run_id is not None:
        store.subscribe(request.connection_id, run_id)
        _ask_for_replay(request, run_id, _after_of(request.query.get("after")))
    return ok()


REPLAY = "hopgraph_replay"
"""The key of the event ``$connect`` invokes this function with, for a replay."""
OPEN_WAIT_S = 10.0
"""How long a replay waits for its connection to open (API Gateway opens it once ``$connect``
has returned: milliseconds, unless the client went away)."""


def _after_of(value: str | None) -> int:
    """``?after=``: the ``seq`` the replay starts after (-1, every step, when absent)."""
    if value is None or not value.lstrip("-").isdigit():
        return -1
    return checked_after(int(value))


def _ask_for_replay(request: WsRequest, run_id: str, after: int) -> None:
    """Invoke this function (InvocationType=Event) to replay ``run_id`` to the connection once
    it is open. Not fatal when it fails: the subscription stands, live events come, and the
    client may still send ``subscribe``."""
    name = _settings().websocket_function
    if not name:
        log.warning("HOPGRAPH_WEBSOCKET_FUNCTION is unset: no replay for %s", request.connection_id)
        return
    spec = {
        "connection_id": request.connection_id,
        "domain_name": request.domain_name,
        "stage": request.stage,
        "run_id": run_id,
        "after": after,
    }
    try:
        from functions.aws import clients

        clients.client("lambda").invoke(
            FunctionName=name,
            InvocationType="Event",
            Payload=json.dumps({REPLAY: spec}).encode(),
        )
    except Exception as exc:
        log.warning("no replay for %s: Invoke failed (%s)", request.connection_id, exc)


def replay_once_open(spec: dict[str, Any]) -> Response:
    """The replay ``$connect`` asked for: once the connection is open, what ``subscribe``
    does (the committed steps, then the run's status; a finished run's final event)."""
    message = {"action": SUBSCRIBE, "run_id": spec.get("run_id"), "after": spec.get("after", -1)}
    request = WsRequest(
        route_key=SUBSCRIBE,
        connection_id=str(spec.get("connection_id", "")),
        domain_name=str(spec.get("domain_name", "")),
        stage=str(spec.get("stage", "")),
        body=json.dumps(message),
    )
    if not _opened(request):
        return ok()  # the client went away before the connection opened
    return subscribe(request)


def _opened(request: WsRequest) -> bool:
    """Wait until the connection answers GetConnection (410 until API Gateway opens it)."""
    from functions.aws.notifier import error_code, management_client

    endpoint = request.endpoint(_settings().ws_endpoint)
    deadline = time.monotonic() + OPEN_WAIT_S
    while True:
        try:
            management_client(endpoint).get_connection(ConnectionId=request.connection_id)
            return True
        except Exception as exc:
            if error_code(exc) != "GoneException" or time.monotonic() > deadline:
                log.info("no replay for %s: %s", request.connection_id, error_code(exc) or exc)
                return False
        time.sleep(0.05)


@errors_as_replies
def disconnect(request: WsRequest) -> Response:
    """Forget the connection and all its subscriptions."""
    _store().delete_connection(request.connection_id)
    return ok()


@errors_as_replies
def subscribe(request: WsRequest) -> Response:
    """Subscribe the caller to a run, replay its committed steps, then say where it stands.

    ``{"action": "subscribe", "run_id": ..., "after": seq}``: the replay is every committed
    step with a greater ``seq`` (all of them by default), one step event each, in order; then
    the run's status event (its final event, with the final state, if it has ended).

    The subscription is written before the log is read, and the last step replayed is
    recorded on it: a step that commits meanwhile is replayed, or posted live, or both, never
    neither (functions/aws/notifier.py). Live events may interleave with the replay; clients
    order and dedupe by ``seq``.

    Only the connection's owner's runs (every run for an admin): another owner's run is
    answered as an unknown one, before anything is written or replayed."""
    run_id, after = request.run_id(), request.after()
    store = _store()
    opened = store.get_connection(request.connection_id)
    visible_run(store, Caller(opened.owner or "", admin=opened.admin), run_id)
    store.subscribe(request.connection_id, run_id)
    try:
        last = _replay(request, store, run_id, after)
        run = store.get_run(run_id)
    except RunNotFound:
        store.unsubscribe(request.connection_id, run_id)
        raise
    if last is not None and last < run.steps - 1:  # steps committed since the replay read
        last = _replay(request, store, run_id, last)
    if last is not None:  # the worker after the next step posts that step again if need be
        store.record_replay(request.connection_id, run_id, last)
    reply(request, run_status_event(run, time.time()))
    return ok()


def _replay(request: WsRequest, store: RunStore, run_id: str, after: int) -> int | None:
    """Post the committed steps after ``after`` to the caller, every page; the last ``seq``
    replayed (``after`` if none), or None once a post fails (the caller notices the gap when
    the run's status arrives, and subscribes again from where it is)."""
    while True:
        page = store.list_steps(run_id, after=after, limit=REPLAY_PAGE_SIZE)
        for step in page.items:
            if not reply(request, logged_step_event(step)):
                return None
            after = step.seq
        if page.cursor is None or not page.items:
            return after


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
