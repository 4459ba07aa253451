"""Replies to the caller, and the one place where errors become WebSocket replies.

API Gateway passes a route's return value to the client only if the route has a route
response (two-way routes); ours are one-way (template.yaml), so every reply is posted through
the Management API, like any other message. The return value still matters on ``$connect``:
a non-2xx status refuses the connection, and API Gateway answers the handshake with it.
A reply cannot be posted on ``$connect`` itself: the connection exists only once that route
has returned (a post during it gets 410 Gone).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from engine.errors import InvalidInputError, client_message, transport_of
from functions.aws.notifier import encode, error_code, fit, post
from functions.websocket.request import WsRequest

log = logging.getLogger("hopgraph.websocket")

Response = dict[str, Any]
Route = Callable[[WsRequest], Response]

CONNECT = "$connect"
DISCONNECT = "$disconnect"


def ok() -> Response:
    return {"statusCode": 200}


def reply(request: WsRequest, message: dict[str, Any]) -> bool:
    """Post ``message`` to the caller, cut down to API Gateway's message size if need be
    (events.fit); False if it could not be delivered (never raises)."""
    from functions.settings import get_settings

    endpoint = request.endpoint(get_settings().ws_endpoint)
    try:
        delivered = post(endpoint, request.connection_id, encode(fit(message)))
    except Exception as exc:
        log.warning("reply to %s failed (%s)", request.connection_id, error_code(exc) or exc)
        return False
    if not delivered:
        log.info("reply to %s: the connection is gone", request.connection_id)
    return delivered


def status_and_message(exc: Exception) -> tuple[int, str]:
    """How an error reads to a WebSocket client: the HTTP status of its row in the error
    table (:mod:`engine.errors`) and the message an HTTP client would get."""
    return transport_of(exc).status, client_message(exc)


def error_reply(request: WsRequest, exc: Exception) -> Response:
    """Turn ``exc`` into the route's answer: a refused connection on ``$connect``, nothing on
    ``$disconnect`` (the client is gone), an ``{"type": "error"}`` message on other routes."""
    status, _message = status_and_message(exc)
    if status == 500:
        log.exception("route %s failed", request.route_key, exc_info=exc)
    if request.route_key == CONNECT:
        return {"statusCode": status, "body": json.dumps(error_doc(exc))}
    if request.route_key != DISCONNECT:
        reply(request, error_message(request, exc))
    return {"statusCode": status}


def error_doc(exc: Exception) -> dict[str, Any]:
    """``{"type": "error", "status", "error", "message"}``: the status and ``error`` (the
    stable kind) are those an HTTP client gets for the same error."""
    row = transport_of(exc)
    message = client_message(exc)
    return {"type": "error", "status": row.status, "error": row.type, "message": message}


def error_message(request: WsRequest, exc: Exception) -> dict[str, Any]:
    """:func:`error_doc`, plus the action and run it answers, if known."""
    doc = error_doc(exc)
    action = request.action()
    if action is not None:
        doc["action"] = action
        with contextlib.suppress(InvalidInputError):  # echo the run only if it is well-formed
            doc["run_id"] = request.run_id()
    return doc


def errors_as_replies(route: Route) -> Route:
    """Decorate a route so that whatever it raises becomes the client's reply."""

    @functools.wraps(route)
    def wrapper(request: WsRequest) -> Response:
        try:
            return route(request)
        except Exception as exc:
            return error_reply(request, exc)

    return wrapper
