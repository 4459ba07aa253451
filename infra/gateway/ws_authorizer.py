"""API Gateway's part in a WebSocket API's ``$connect`` Lambda REQUEST authorizer, for the
local gateway (infra/gateway/ws_gateway.py).

What API Gateway does, as its WebSocket developer guide describes it and this reproduces:

- the authorizer's identity sources (template.yaml: ``WebSocketAuthorizer.IdentitySource``,
  ``route.request.querystring.token``) must all be present and non-empty, else the
  handshake is refused with 401 ``{"message": "Unauthorized"}`` and the function is not
  called;
- the function gets a ``REQUEST`` event: ``type``, ``methodArn`` (ending in ``/$connect``),
  the handshake's headers and query string, ``requestContext``;
- an ``Unauthorized`` error from the function: 401; any other failure, or an answer that is
  not a policy: 500; a policy that does not allow ``execute-api:Invoke`` on the method: 403
  ``{"message": "Forbidden"}``;
- an allowing policy: ``$connect`` runs with ``requestContext.authorizer`` holding the
  policy's ``context`` (values as strings, as in REST and WebSocket proxy events) and its
  ``principalId``.

In the local stack's default (dev) mode a handshake without a token is authorized with the
dev user's token instead of being refused; a token given is checked as on AWS.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("hopgraph.local.ws")

Handler = Callable[[dict[str, Any], Any], Any]
QUERY_SOURCE = "route.request.querystring."
HEADER_SOURCE = "route.request.header."
UNAUTHORIZED_MESSAGE = "Unauthorized"  # what the function raises to say 401


@dataclass(frozen=True)
class Refused:
    """A handshake the authorizer step refused: the status and body API Gateway sends."""

    status: int
    message: str

    @property
    def body(self) -> dict[str, str]:
        return {"message": self.message}


UNAUTHORIZED = Refused(401, "Unauthorized")
FORBIDDEN = Refused(403, "Forbidden")
FAILED = Refused(500, "Internal server error")


def identity_sources(template_doc: Mapping[str, Any]) -> list[str]:
    """The identity sources of the template's WebSocket REQUEST authorizer."""
    for resource in (template_doc.get("Resources") or {}).values():
        props = resource.get("Properties") or {}
        if resource.get("Type") == "AWS::ApiGatewayV2::Authorizer" and (
            props.get("AuthorizerType") == "REQUEST"
        ):
            return [str(source) for source in props.get("IdentitySource") or []]
    return []


@dataclass
class ConnectAuthorizer:
    """Runs ``handler`` (the authorizer function) for each handshake, as API Gateway would.

    ``dev_token``: in the local stack's dev mode, the token a handshake without one is
    authorized with (None: refused, as on AWS)."""

    handler: Handler
    sources: list[str]
    dev_token: Callable[[], str] | None = None

    def authorize(self, connect_event: dict[str, Any], context: Any) -> dict[str, Any] | Refused:
        """The ``requestContext.authorizer`` block for ``$connect``, or a :class:`Refused`."""
        event = self._request_event(connect_event)
        if event is None:
            return UNAUTHORIZED
        try:
            answer = self.handler(event, context)
        except Exception as exc:
            if str(exc) == UNAUTHORIZED_MESSAGE:
                return UNAUTHORIZED
            log.exception("the $connect authorizer raised")
            return FAILED
        return _decision(answer, event["methodArn"])

    def _request_event(self, connect_event: dict[str, Any]) -> dict[str, Any] | None:
        """The authorizer's REQUEST event; None if an identity source is missing."""
        query = dict(connect_event.get("queryStringParameters") or {})
        headers = {k.lower(): v for k, v in (connect_event.get("headers") or {}).items()}
        missing = [s for s in self.sources if not _source_value(s, query, headers)]
        if missing and self.dev_token is not None and _all_in_query(missing):
            token = self.dev_token()
            query.update({s.removeprefix(QUERY_SOURCE): token for s in missing})
            missing = []
        if missing:
            return None
        context = connect_event["requestContext"]
        method_arn = (
            f"arn:aws:execute-api:us-east-1:000000000000:{context['apiId']}/"
            f"{context['stage']}/$connect"
        )
        return {
            "type": "REQUEST",
            "methodArn": method_arn,
            "headers": connect_event.get("headers") or {},
            "multiValueHeaders": connect_event.get("multiValueHeaders") or {},
            "queryStringParameters": query,
            "multiValueQueryStringParameters": {k: [v] for k, v in query.items()},
            "stageVariables": {},
            "requestContext": context,
        }


def _source_value(source: str, query: Mapping[str, str], headers: Mapping[str, str]) -> str:
    if source.startswith(QUERY_SOURCE):
        return str(query.get(source.removeprefix(QUERY_SOURCE)) or "")
    if source.startswith(HEADER_SOURCE):
        return str(headers.get(source.removeprefix(HEADER_SOURCE).lower()) or "")
    return "x"  # stage variables and context sources: always present here


def _all_in_query(sources: list[str]) -> bool:
    return all(s.startswith(QUERY_SOURCE) for s in sources)


def _decision(answer: Any, method_arn: str) -> dict[str, Any] | Refused:
    """Read the authorizer's IAM policy answer the way API Gateway does."""
    if not isinstance(answer, dict) or not isinstance(answer.get("policyDocument"), dict):
        log.error("the $connect authorizer answered without a policy document")
        return FAILED
    statements = answer["policyDocument"].get("Statement") or []
    if isinstance(statements, dict):
        statements = [statements]
    effects = {
        str(s.get("Effect"))
        for s in statements
        if isinstance(s, dict) and _covers(s, "Action", "execute-api:Invoke")
        and _covers(s, "Resource", method_arn)
    }  # fmt: skip
    if "Deny" in effects or "Allow" not in effects:
        return FORBIDDEN
    context = answer.get("context")
    if not isinstance(context, dict):
        context = {}
    # The integration receives every context value as a string (true -> "true").
    rendered = {str(k): _rendered(v) for k, v in context.items()}
    return {**rendered, "principalId": str(answer.get("principalId", ""))}


def _rendered(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _covers(statement: Mapping[str, Any], key: str, value: str) -> bool:
    patterns = statement.get(key)
    patterns = patterns if isinstance(patterns, list) else [patterns]
    return any(isinstance(p, str) and fnmatch.fnmatchcase(value, p) for p in patterns)
