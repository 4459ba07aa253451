"""API Gateway's HTTP API JWT authorizer, in front of the app where there is no API Gateway.

The deployed API never sees a request whose token API Gateway refused, and reads the claims
of the others from ``requestContext.authorizer.jwt`` of its event. Locally (uvicorn) and in
the in-process tests there is no API Gateway, so this does its part with the same verifier
the WebSocket authorizer uses (:mod:`functions.auth.tokens`), on the routes template.yaml
leaves open (``Auth: {Authorizer: NONE}``) or not, and hands the app the claims the same
way, so the app has one path:

- a route that needs no token: passed through, no claims;
- no ``Authorization`` header: 401 ``{"message": "Unauthorized"}``, as API Gateway answers;
  or, in the local stack's default mode only, the request acts as the default dev user;
- a token refused: 401 with ``www-authenticate: Bearer ... error_description="..."``;
- a valid token: its claims in ``scope["aws.event"]``, rendered as API Gateway renders them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.types import ASGIApp, Receive, Scope, Send

from functions.auth.caller import claim_values, event_claims
from functions.auth.tokens import TokenRejected, TokenVerifier, bearer_token

UNAUTHORIZED_BODY = json.dumps({"message": "Unauthorized"}).encode()


@dataclass(frozen=True)
class Refusal:
    """What API Gateway answers a request its authorizer refused."""

    status: int
    www_authenticate: str

    @property
    def headers(self) -> dict[str, str]:
        return {"content-type": "application/json", "www-authenticate": self.www_authenticate}


def _route_pattern(route: str) -> tuple[str, re.Pattern[str]]:
    method, _, path = route.partition(" ")
    pattern = re.escape(path)
    pattern = re.sub(r"\\\{[^/]+?\\\+\\\}", ".+", pattern)  # greedy {proxy+}
    pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", pattern)  # one segment {name}
    return method.upper(), re.compile(pattern)


class HttpApiJwtAuthorizer:
    """Decides, per request, what API Gateway's JWT authorizer would."""

    def __init__(
        self,
        verifier: TokenVerifier,
        open_routes: Iterable[str],
        *,
        default_token: Callable[[], str] | None = None,
    ) -> None:
        self.verifier = verifier
        self._open = [_route_pattern(route) for route in open_routes]
        self.default_token = default_token
        """Permissive mode: the token a request without one acts with (None: strict)."""

    @property
    def strict(self) -> bool:
        return self.default_token is None

    def is_open(self, method: str, path: str) -> bool:
        return any(
            m in ("ANY", method.upper()) and p.fullmatch(path) is not None for m, p in self._open
        )

    def authorize(self, method: str, path: str, authorization: str | None) -> Any:
        """``None`` for an open route, the event's ``authorizer`` block for a valid token,
        else a :class:`Refusal`."""
        if self.is_open(method, path):
            return None
        token = bearer_token(authorization)
        if token is None and self.default_token is not None:
            token = self.default_token()
        if token is None:
            return Refusal(401, "Bearer")
        try:
            claims = self.verifier.verify(token)
        except TokenRejected as exc:
            description = str(exc).replace('"', "'")
            return Refusal(
                401, f'Bearer scope="" error="invalid_token" error_description="{description}"'
            )
        scope = claims.get("scope", claims.get("scp"))
        scopes = claim_values(scope, space_separated=True) or None
        return {"jwt": {"claims": event_claims(claims), "scopes": scopes}}


class JwtAuthorizerMiddleware:
    """ASGI middleware running :class:`HttpApiJwtAuthorizer` before ``app``."""

    def __init__(self, app: ASGIApp, authorizer: HttpApiJwtAuthorizer) -> None:
        self.app = app
        self.authorizer = authorizer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        # In a worker thread: a verifier may fetch keys over HTTP, perhaps from this server.
        decision = await anyio.to_thread.run_sync(
            self.authorizer.authorize, scope["method"], scope["path"], headers.get("authorization")
        )
        if isinstance(decision, Refusal):
            await send(
                {
                    "type": "http.response.start",
                    "status": decision.status,
                    "headers": [(k.encode(), v.encode()) for k, v in decision.headers.items()],
                }
            )
            await send({"type": "http.response.body", "body": UNAUTHORIZED_BODY})
            return
        if decision is not None:
            # The event API Gateway builds: the request's headers (the app reads the verified
            # token's claims from its Authorization header) and the authorizer's rendering.
            authorization = headers.get("authorization")
            if authorization is None and self.authorizer.default_token is not None:
                authorization = f"Bearer {self.authorizer.default_token()}"  # dev mode
            event_headers = {"authorization": authorization} if authorization else {}
            event = {"headers": event_headers, "requestContext": {"authorizer": decision}}
            scope = {**scope, "aws.event": event}
        await self.app(scope, receive, send)
