"""Lambda REQUEST authorizer of the WebSocket API's ``$connect`` (template.yaml:
``WebSocketAuthorizerFunction``).

Browsers cannot set headers on a WebSocket handshake, so the token travels as ``?token=``
(the authorizer's identity source: API Gateway refuses a connection without it, 401, before
calling this). A valid token gets an IAM policy allowing the connection, and the caller's
identity as the policy's ``context``, which API Gateway hands to the ``$connect`` route as
``requestContext.authorizer``; an invalid one raises ``Unauthorized``, which API Gateway
answers with 401.

Its own small function with lean imports (PyJWT, no FastAPI, Powertools or boto3): its cold
start sits in front of every new connection. The verifier, with the issuer's keys found by
OpenID discovery and cached, lives as long as the execution environment.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from functions.auth.caller import AdminRule, Unauthenticated, caller_from_claims
from functions.auth.tokens import TokenRejected, TokenVerifier, discovered_keys

log = logging.getLogger("hopgraph.authorizer")
UNAUTHORIZED = "Unauthorized"
"""The error message API Gateway turns into a 401 (any other failure is a 500)."""

_verifier: TokenVerifier | None = None
_lock = threading.Lock()


class Unauthorized(Exception):
    def __init__(self) -> None:
        super().__init__(UNAUTHORIZED)


def verifier() -> TokenVerifier:
    """The process's verifier, built on first use from the settings (issuer, audiences)."""
    global _verifier
    if _verifier is None:
        with _lock:
            if _verifier is None:
                from functions.settings import get_settings

                settings = get_settings()
                keys = discovered_keys(settings.auth_issuer)
                _verifier = TokenVerifier(settings.auth_issuer, settings.auth_audiences, keys)
    return _verifier


def install(replacement: TokenVerifier | None) -> None:
    """Use ``replacement`` from now on (``None``: rebuild from the settings on next use)."""
    global _verifier
    _verifier = replacement


def admin_rule() -> AdminRule:
    from functions.settings import get_settings

    settings = get_settings()
    return AdminRule(settings.admin_claim, settings.admin_value)


def allow(method_arn: str, sub: str, admin: bool) -> dict[str, Any]:
    """The authorizer's answer for an accepted caller: invoke ``$connect``, with who it is."""
    return {
        "principalId": sub,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": method_arn}
            ],
        },
        # Context values may only be strings, numbers or booleans.
        "context": {"sub": sub, "admin": admin},
    }


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Allow the connection for a valid ``?token=``; raise Unauthorized (401) otherwise."""
    query = event.get("queryStringParameters") or {}
    try:
        claims = verifier().verify(query.get("token"))
        caller = caller_from_claims(claims, admin_rule())
    except (TokenRejected, Unauthenticated) as exc:
        log.info("connection refused: %s", exc)
        raise Unauthorized() from None
    return allow(str(event.get("methodArn", "")), caller.sub, caller.admin)
