"""Tokens for the tests: a test issuer (as the local stack's, with its own key) and ways to
spoil a token. The key is made once per session: RSA key generation is the slow part."""

from __future__ import annotations

import time
from functools import cache
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from infra.stack.token_issuer import LocalIssuer

ISSUER = "https://issuer.hopgraph.test"
DEFAULT_USER = "tester"
"""Who the in-process API tests call as when they give no token."""


@cache
def issuer() -> LocalIssuer:
    return LocalIssuer(ISSUER, rsa.generate_private_key(public_exponent=65537, key_size=2048))


@cache
def other_key_issuer() -> LocalIssuer:
    """Same issuer name and audience, another key: its tokens must be refused."""
    return LocalIssuer(ISSUER, rsa.generate_private_key(public_exponent=65537, key_size=2048))


def token(user: str = DEFAULT_USER, *, admin: bool = False, **claims: Any) -> str:
    return issuer().issue(user, admin=admin, **claims)


def expired_token(user: str = DEFAULT_USER) -> str:
    past = int(time.time()) - 3600
    return issuer().issue(user, iat=past - 60, exp=past)


def wrong_audience_token(user: str = DEFAULT_USER) -> str:
    return issuer().issue(user, aud="someone-else")


def foreign_key_token(user: str = DEFAULT_USER) -> str:
    return other_key_issuer().issue(user)


def unsigned_token(user: str = DEFAULT_USER) -> str:
    """``alg: none``: the claims of a valid token, no signature."""
    claims = jwt.decode(token(user), options={"verify_signature": False})
    return jwt.encode(claims, None, algorithm="none", headers={"kid": issuer().kid})


def issuer_in(folder: Path) -> LocalIssuer:
    return LocalIssuer.in_folder(folder, ISSUER)
