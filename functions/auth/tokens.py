"""JWT verification as API Gateway's HTTP API JWT authorizer does it, with PyJWT.

The same checks run in the WebSocket ``$connect`` authorizer (on AWS and locally) and in the
local stack's stand-in for the HTTP API's authorizer, so a token is accepted or refused alike
everywhere. What API Gateway checks, in order:

1. the token, alone or after ``Bearer``;
2. an RSA signature (``RS256``/``RS384``/``RS512``: API Gateway supports nothing else, so
   ``alg: none`` and HMAC tokens are refused before any key is looked at), by the key the
   header's ``kid`` names in the issuer's JWKS (found through OpenID discovery);
3. ``iss`` equal to the configured issuer; ``aud``, or ``client_id`` when there is no ``aud``
   (Cognito access tokens), one of the configured audiences; ``exp`` in the future; ``nbf``
   and ``iat`` in the past.

A refusal says why in words API Gateway uses in its ``www-authenticate`` header, and never
echoes anything of the token.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Collection
from typing import Any, Protocol

import jwt

ALGORITHMS = ("RS256", "RS384", "RS512")
"""The only signing algorithms accepted (API Gateway's JWT authorizer supports RSA only)."""
JWKS_CACHE_SECONDS = 7_200  # API Gateway caches an issuer's public keys for two hours
DISCOVERY_TIMEOUT_SECONDS = 5


class TokenRejected(Exception):
    """The token is missing or invalid; ``str()`` says why, without quoting the token."""


class KeySource(Protocol):
    """Finds the public key that signed a token (``jwt.PyJWKClient`` is one)."""

    def get_signing_key_from_jwt(self, token: str | bytes) -> jwt.PyJWK: ...


class StaticKeys:
    """A fixed JWK Set: the local issuer's own keys, where fetching them would be a loop."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self._keys = jwt.PyJWKSet.from_dict(jwks)

    def get_signing_key_from_jwt(self, token: str | bytes) -> jwt.PyJWK:
        kid = jwt.get_unverified_header(token).get("kid")
        for key in self._keys.keys:
            if key.key_id == kid:
                return key
        raise TokenRejected("the token's signing key is not known")


def discovered_keys(issuer: str) -> jwt.PyJWKClient:
    """The issuer's keys, located as API Gateway locates them: the ``jwks_uri`` of its OpenID
    discovery document, ``{issuer}/.well-known/openid-configuration``; cached."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    with urllib.request.urlopen(url, timeout=DISCOVERY_TIMEOUT_SECONDS) as reply:
        jwks_uri = json.loads(reply.read())["jwks_uri"]
    return jwt.PyJWKClient(jwks_uri, cache_keys=True, lifespan=JWKS_CACHE_SECONDS)


def bearer_token(value: str | None) -> str | None:
    """The token of an ``Authorization`` value: alone, or after ``Bearer`` (any case)."""
    if value is None:
        return None
    scheme, _, rest = value.strip().partition(" ")
    token = rest.strip() if scheme.lower() == "bearer" else value.strip()
    return token or None


class TokenVerifier:
    """Verifies tokens of one issuer for a set of audiences."""

    def __init__(
        self, issuer: str, audiences: Collection[str], keys: KeySource, *, leeway: float = 0
    ) -> None:
        if not issuer or not audiences:
            raise ValueError("a token verifier needs an issuer and at least one audience")
        self.issuer = issuer
        self.audiences = frozenset(audiences)
        self._keys = keys
        self._leeway = leeway

    def verify(self, token: str | None) -> dict[str, Any]:
        """The token's claims, or TokenRejected saying what is wrong with it."""
        token = bearer_token(token)
        if token is None:
            raise TokenRejected("no token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRejected("the token is not a JWT") from None
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise TokenRejected(f"signing method {str(algorithm)[:16]} is invalid")
        if not header.get("kid"):
            raise TokenRejected("the token has no key id")
        claims = self._decode(token, algorithm)
        self._check_audience(claims)
        return claims

    def _decode(self, token: str, algorithm: str) -> dict[str, Any]:
        try:
            key = self._keys.get_signing_key_from_jwt(token)
            return jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=self.issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejected("the token has expired") from None
        except (jwt.ImmatureSignatureError, jwt.InvalidIssuedAtError):
            raise TokenRejected("the token is not valid yet") from None
        except jwt.InvalidIssuerError:
            raise TokenRejected("the token does not have a valid issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejected(f"the token has no {exc.claim} claim") from None
        except (jwt.PyJWKClientError, TokenRejected):
            raise TokenRejected("the token's signing key is not known") from None
        except jwt.PyJWTError:
            raise TokenRejected("the token's signature is invalid") from None

    def _check_audience(self, claims: dict[str, Any]) -> None:
        # API Gateway reads client_id only when there is no aud, and evaluates aud otherwise.
        audience = claims["aud"] if "aud" in claims else claims.get("client_id")
        given = audience if isinstance(audience, list) else [audience]
        if not any(isinstance(a, str) and a in self.audiences for a in given):
            raise TokenRejected("the token does not have a valid audience")
