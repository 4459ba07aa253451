"""Lambda entry point of every WebSocket route (template.yaml: ``WebSocketFunction``).

API Gateway selects the route from the message's ``action`` (``$request.body.action``);
unknown actions reach ``$default``. Imports are kept to what the routes need (no FastAPI, no
Powertools, no boto3 until a client is first used) because this function's cold start sits
in front of a user's first connection.
"""

from __future__ import annotations

from typing import Any

from functions.websocket.replies import Response
from functions.websocket.request import WsRequest
from functions.websocket.routes import BY_ROUTE_KEY, DEFAULT, REPLAY, replay_once_open

ROUTES: tuple[str, ...] = tuple(BY_ROUTE_KEY)
"""The route keys this handler serves; template.yaml declares one route for each."""


def handler(event: dict[str, Any], context: Any) -> Response:
    if isinstance(event, dict) and isinstance(event.get(REPLAY), dict):  # from our $connect
        return replay_once_open(event[REPLAY])
    try:
        request = WsRequest.from_event(event)
    except Exception as exc:  # not a WebSocket event: no connection to answer on
        return {"statusCode": 400, "body": str(exc)}
    return BY_ROUTE_KEY.get(request.route_key, BY_ROUTE_KEY[DEFAULT])(request)
