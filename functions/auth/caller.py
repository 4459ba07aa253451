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
        return bool(self.value) and self.value in claim_values(
            claims.get(self.claim), space_separated=self.claim in SPACE_SEPARATED_CLAIMS
        )


SPACE_SEPARATED_CLAIMS = frozenset({"scope", "scp"})
"""Claims that OAuth 2.0 (RFC 6749 section 3.3; Entra ID's ``scp``) defines as one string of
space-separated values. Every other claim is read as its JSON type says."""


def claim_values(value: Any, *, space_separated: bool = False) -> list[str]:
    """A claim's values, read by the claim's real type (never by guessing at its text).

    - a JSON array (Cognito's ``cognito:groups``, Auth0's and Entra ID's ``roles`` and
      ``groups``): its string elements, each whole (``"hopgraph-admin wannabes"`` is one
      group); other elements are ignored;
    - a string: one value, whole, unless the claim is space-separated (``scope``, ``scp``);
    - a boolean: ``"true"`` if it is ``true``, nothing if ``false`` (a claim
      ``"admin": true`` matches the value ``true``; ``"admin": "false"`` is the string
      ``false`` and matches only ``false``);
    - anything else (a number, an object, null): nothing.

    API Gateway renders every claim of an HTTP API event as a string (a list as ``[a b]``,
    which cannot be read back: ``[a b]`` is one group or two), so the API reads the claims
    from the verified token itself (:func:`functions.api.deps.token_claims`)."""
    if isinstance(value, bool):
        return ["true"] if value else []
    if isinstance(value, list | tuple):
        return [v for v in value if isinstance(v, str)]
    if isinstance(value, str):
        return [v for v in value.split(" ") if v] if space_separated else [value]
    return []


def caller_from_claims(claims: Mapping[str, Any] | None, rule: AdminRule) -> Caller:
    """The caller a verified token's claims describe; Unauthenticated without a subject."""
    if not claims:
        raise Unauthenticated("no verified claims")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.strip():
        raise Unauthenticated("the token has no subject")
    return Caller(sub, admin=rule.applies(claims))


def render_claim(value: Any) -> str:
    """One claim as API Gateway renders it into an HTTP API (payload 2.0) event: a string,
    a list as ``[a b]``, a boolean in lower case."""
    if isinstance(value, list | tuple):
        return "[" + " ".join(render_claim(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def event_claims(claims: Mapping[str, Any]) -> dict[str, str]:
    """Claims as an HTTP API (payload 2.0) event carries them: every value a string, a list
    as ``[a b]``, so that the local stack hands the app exactly what API Gateway does."""
    return {name: render_claim(value) for name, value in claims.items()}
