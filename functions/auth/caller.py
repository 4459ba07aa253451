"""The caller's identity, as the claims of a verified token give it, and what it may see.

Kept free of JWT and web imports: the API, the WebSocket routes and the authorizer all use it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_ADMIN_CLAIM = "cognito:groups"
DEFAULT_ADMIN_VALUE = "hopgraph-admin"


class Unauthenticated(Exception):
    """No usable identity: no claims, or no subject in them."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Someone the token says is calling: ``sub`` owns what they create."""

    sub: str
    admin: bool = False

    def sees(self, owner: str | None) -> bool:
        """Whether a resource of ``owner`` exists for this caller (unowned: admins only)."""
        return self.admin or (owner is not None and owner == self.sub)

    @property
    def owner_filter(self) -> str | None:
        """The owner listings are restricted to (``None``: everyone's, for an admin)."""
        return None if self.admin else self.sub


@dataclass(frozen=True, slots=True)
class AdminRule:
    """A caller is an admin when claim ``claim`` holds ``value`` (a group, a scope...)."""

    claim: str = DEFAULT_ADMIN_CLAIM
    value: str = DEFAULT_ADMIN_VALUE

    def applies(self, claims: Mapping[str, Any]) -> bool:
        return bool(self.value) and self.value in claim_values(claims.get(self.claim))


def claim_values(value: Any) -> list[str]:
    """A claim as a list of strings, however it travelled.

    In a token a list claim is a JSON array (``cognito:groups``) and OAuth scopes are one
    space-separated string; in an HTTP API event API Gateway renders every claim as a string,
    a list as ``[a b]``. Hand-written because no library reads API Gateway's rendering."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    text = str(value).strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except ValueError:
            return text.strip("[]").split()
        return [str(v) for v in parsed] if isinstance(parsed, list) else [str(parsed)]
    return text.split()


def caller_from_claims(claims: Mapping[str, Any] | None, rule: AdminRule) -> Caller:
    """The caller a verified token's claims describe; Unauthenticated without a subject."""
    if not claims:
        raise Unauthenticated("no verified claims")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.strip():
        raise Unauthenticated("the token has no subject")
    return Caller(sub, admin=rule.applies(claims))


def event_claims(claims: Mapping[str, Any]) -> dict[str, str]:
    """Claims as an HTTP API (payload 2.0) event carries them: every value a string, a list
    as ``[a b]``, so that the local stack hands the app exactly what API Gateway does."""

    def render(value: Any) -> str:
        if isinstance(value, list | tuple):
            return "[" + " ".join(render(v) for v in value) + "]"
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, dict):
            return json.dumps(value, separators=(",", ":"))
        return str(value)

    return {name: render(value) for name, value in claims.items()}
