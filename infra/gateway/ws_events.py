"""API Gateway WebSocket events, as the local gateway hands them to a Lambda handler.

The shapes follow what API Gateway sends a Lambda proxy integration (see events/ws_*.json,
captured from real APIs): ``requestContext`` with the route, connection and stage; headers
and query string on ``$connect``; the frame on messages; the close code on ``$disconnect``.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_ROUTE = "$default"


def new_id() -> str:
    """A connection or request id shaped like API Gateway's (16 characters, ``=``-padded).

    URL-safe alphabet: an id travels in the @connections path, and ``/`` would need care."""
    return base64.urlsafe_b64encode(secrets.token_bytes(11)).decode()


def now_ms() -> int:
    return int(time.time() * 1000)


def request_time(epoch_ms: int) -> str:
    """``requestTime`` as API Gateway writes it: ``21/Nov/2026:12:50:04 +0000``."""
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(epoch_ms / 1000))


def select_route(body: str | bytes, routes: Collection[str]) -> str:
    """Route selection on ``$request.body.action``: the action if a route has that key,
    else ``$default`` (a binary frame, a body that is not a JSON object, no action)."""
    if isinstance(body, bytes):
        return DEFAULT_ROUTE
    try:
        doc = json.loads(body)
    except ValueError:
        return DEFAULT_ROUTE
    action = doc.get("action") if isinstance(doc, dict) else None
    if isinstance(action, str) and action in routes and not action.startswith("$"):
        return action
    return DEFAULT_ROUTE


@dataclass
class ConnectionInfo:
    """What the gateway knows of one client connection, for the events it builds."""

    domain_name: str
    source_ip: str
    user_agent: str
    connection_id: str = field(default_factory=new_id)
    connected_at: int = field(default_factory=now_ms)
    last_active_at: int = field(default_factory=now_ms)


@dataclass(frozen=True)
class Stage:
    """The API and stage the events say they come from."""

    name: str = "local"
    api_id: str = "local"

    def context(
        self, conn: ConnectionInfo, route_key: str, event_type: str, **extra: Any
    ) -> dict[str, Any]:
        request_id = new_id()
        epoch = now_ms()
        return {
            "routeKey": route_key,
            **extra,
            "eventType": event_type,
            "extendedRequestId": request_id,
            "requestTime": request_time(epoch),
            "messageDirection": "IN",
            "stage": self.name,
            "connectedAt": conn.connected_at,
            "requestTimeEpoch": epoch,
            "identity": {"userAgent": conn.user_agent, "sourceIp": conn.source_ip},
            "requestId": request_id,
            "domainName": conn.domain_name,
            "connectionId": conn.connection_id,
            "apiId": self.api_id,
        }

    def connect_event(
        self,
        conn: ConnectionInfo,
        headers: list[tuple[str, str]],
        query: list[tuple[str, str]],
    ) -> dict[str, Any]:
        """``$connect``: the handshake's headers (plus the X-Forwarded-* API Gateway adds)
        and query string; single-value maps keep the last value, as API Gateway's do."""
        forwarded = [
            ("X-Amzn-Trace-Id", f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}"),
            ("X-Forwarded-For", conn.source_ip),
            ("X-Forwarded-Port", conn.domain_name.rpartition(":")[2] or "80"),
            ("X-Forwarded-Proto", "http"),  # plain HTTP: the local gateway has no TLS
        ]
        event: dict[str, Any] = {
            **_single_and_multi("headers", "multiValueHeaders", [*headers, *forwarded]),
        }
        if query:
            event.update(
                _single_and_multi("queryStringParameters", "multiValueQueryStringParameters", query)
            )
        event["requestContext"] = self.context(conn, "$connect", "CONNECT")
        event["isBase64Encoded"] = False
        return event

    def message_event(
        self, conn: ConnectionInfo, data: str | bytes, routes: Collection[str]
    ) -> dict[str, Any]:
        """A frame from the client; binary frames arrive base64-encoded."""
        context = self.context(conn, select_route(data, routes), "MESSAGE", messageId=new_id())
        if isinstance(data, bytes):
            return {
                "requestContext": context,
                "body": base64.b64encode(data).decode(),
                "isBase64Encoded": True,
            }
        return {"requestContext": context, "body": data, "isBase64Encoded": False}

    def disconnect_event(self, conn: ConnectionInfo, code: int, reason: str) -> dict[str, Any]:
        """``$disconnect``, after the connection is closed (nothing can be posted to it)."""
        headers = [("Host", conn.domain_name), ("x-api-key", ""), ("X-Forwarded-For", "")]
        return {
            **_single_and_multi("headers", "multiValueHeaders", headers),
            "requestContext": self.context(
                conn,
                "$disconnect",
                "DISCONNECT",
                disconnectStatusCode=code,
                disconnectReason=reason,
            ),
            "isBase64Encoded": False,
        }


def _single_and_multi(single: str, multi: str, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    one: dict[str, str] = {}
    many: dict[str, list[str]] = {}
    for key, value in pairs:
        one[key] = value
        many.setdefault(key, []).append(value)
    return {single: one, multi: many}


def status_of(result: Any) -> int:
    """The status a Lambda proxy response carries (a response without one counts as 200)."""
    if isinstance(result, Mapping):
        try:
            return int(result.get("statusCode", 200))
        except (TypeError, ValueError):
            return 502
    return 200


def body_of(result: Any) -> str | None:
    if isinstance(result, Mapping) and result.get("body") is not None:
        body = result["body"]
        return body if isinstance(body, str) else json.dumps(body)
    return None


def internal_error(context: Mapping[str, Any]) -> dict[str, str]:
    """What API Gateway sends a client when the integration fails (the handler raised)."""
    return {
        "message": "Internal server error",
        "connectionId": context["connectionId"],
        "requestId": context["requestId"],
    }
