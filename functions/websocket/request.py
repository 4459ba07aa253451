"""What a WebSocket route needs from an API Gateway WebSocket event."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine import json_rules
from engine.errors import InvalidInputError, InvalidJsonError
from functions.auth.caller import Caller

MAX_RUN_ID_LENGTH = 128


@dataclass(frozen=True, slots=True)
class WsRequest:
    """One invocation: the route, the caller's connection, and what it sent."""

    route_key: str
    connection_id: str
    domain_name: str
    stage: str
    body: str | None = None
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    authorizer: dict[str, Any] = field(default_factory=dict)
    """``requestContext.authorizer`` of ``$connect``: the context the Lambda authorizer
    returned (``sub``, ``admin``), every value a string, plus its ``principalId``."""

    @classmethod
    def from_event(cls, event: Any) -> WsRequest:
        """Raises InvalidInputError if ``event`` is not a WebSocket API event."""
        context = event.get("requestContext") if isinstance(event, dict) else None
        if not isinstance(context, dict) or not context.get("connectionId"):
            raise InvalidInputError("not an API Gateway WebSocket event")
        headers = event.get("headers") or {}
        return cls(
            route_key=str(context.get("routeKey", "$default")),
            connection_id=str(context["connectionId"]),
            domain_name=str(context.get("domainName", "")),
            stage=str(context.get("stage", "")),
            body=_body(event),
            query=dict(event.get("queryStringParameters") or {}),
            headers={str(k).lower(): str(v) for k, v in headers.items()},
            authorizer=dict(context.get("authorizer") or {}),
        )

    def caller(self) -> Caller | None:
        """Who opened the connection, as the ``$connect`` authorizer said (None: nobody)."""
        sub = self.authorizer.get("sub") or self.authorizer.get("principalId")
        if not isinstance(sub, str) or not sub.strip():
            return None
        admin = self.authorizer.get("admin")
        return Caller(sub, admin=admin is True or str(admin).lower() == "true")

    def endpoint(self, configured: str = "") -> str:
        """Where to post to this connection: the configured Management API endpoint (set on
        every deployment, and by the local stack), else the stage the client connected to,
        ``https://{domainName}/{stage}``, as API Gateway's own samples build it."""
        if configured:
            return configured.rstrip("/")
        return f"https://{self.domain_name}/{self.stage}"

    def message(self) -> dict[str, Any]:
        """The body as a JSON object; InvalidInputError if it is not one, or if it breaks the
        JSON rule every client document follows (:mod:`engine.json_rules`)."""
        try:
            doc = json_rules.loads(self.body or "")
        except InvalidJsonError:
            raise InvalidJsonError("messages must be JSON objects") from None
        if not isinstance(doc, dict):
            raise InvalidInputError("messages must be JSON objects")
        return doc

    def action(self) -> str | None:
        """The message's ``action`` if it has a readable one (for error replies)."""
        try:
            action = self.message().get("action")
        except InvalidInputError:
            return None
        return action if isinstance(action, str) else None

    def run_id(self) -> str:
        """The run a subscribe/unsubscribe message names."""
        return checked_run_id(self.message().get("run_id"))

    def after(self) -> int:
        """The ``seq`` a subscribe message replays after: -1 (the default) replays every
        committed step, a step's ``seq`` only the ones after it."""
        return checked_after(self.message().get("after", -1))


def checked_run_id(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError('"run_id" must be a non-empty string')
    if len(value) > MAX_RUN_ID_LENGTH:
        raise InvalidInputError(f'"run_id" is longer than {MAX_RUN_ID_LENGTH} characters')
    return value


def checked_after(value: Any) -> int:
    # bool is an int to Python, but `"after": true` is a client's mistake, not step 1
    if isinstance(value, bool) or not isinstance(value, int) or value < -1:
        raise InvalidInputError('"after" must be an integer of -1 or more (a step\'s "seq")')
    return value


def _body(event: dict[str, Any]) -> str | None:
    body = event.get("body")
    if body is None:
        return None
    if event.get("isBase64Encoded"):
        import base64

        try:
            return base64.b64decode(body).decode("utf-8")
        except ValueError:  # binary frames: not JSON, whatever they hold
            return None
    return str(body)
