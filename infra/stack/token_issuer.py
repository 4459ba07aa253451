"""The local stack's token issuer: what Cognito (or your own identity provider) is on AWS.

A signing key kept in the local data folder (created on first use, readable by its owner
only), its JWKS and OpenID discovery document served by the local stack, and tokens signed
for any user name asked for: this is a laptop's stand-in, not a login service. Tokens are
ordinary RS256 JWTs with ``iss``, ``aud``, ``sub``, ``exp``, so the same verifier
(:mod:`functions.auth.tokens`) checks them locally and a real issuer's on AWS.

HTTP surface, served in front of the API on its port::

    GET  /.well-known/openid-configuration   {"issuer", "jwks_uri", ...}
    GET  /.well-known/jwks.json              the public key
    POST /local/token  {"user": "alice", "admin": false}  ->  {"token", "expires_at", "user"}

In strict mode the token route also wants ``"secret"``: the login secret the stack keeps in
its data folder (``login-secret``, readable by its owner only), so that reaching the port is
not enough to sign in as anyone, or as an admin.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from functions.auth.caller import DEFAULT_ADMIN_CLAIM, DEFAULT_ADMIN_VALUE
from functions.auth.tokens import StaticKeys, TokenVerifier

LOCAL_AUDIENCE = "hopgraph-local"
DEFAULT_USER = "dev"
"""Who a request without a token acts as, in the local stack's default (permissive) mode."""
TOKEN_SECONDS = 12 * 3600
KEY_FILE = "signing-key.pem"
SECRET_FILE = "login-secret"
DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/.well-known/jwks.json"
TOKEN_PATH = "/local/token"
MAX_USER_LENGTH = 128


@dataclass(frozen=True)
class LocalIssuer:
    """Signs tokens as ``issuer`` with one RSA key."""

    issuer: str
    key: rsa.RSAPrivateKey
    audience: str = LOCAL_AUDIENCE

    @classmethod
    def in_folder(cls, data_dir: Path, issuer: str) -> LocalIssuer:
        """The issuer whose key is ``data_dir/signing-key.pem`` (created if missing), so tokens
        stay valid across restarts of the stack."""
        path = data_dir / KEY_FILE
        if path.exists():
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValueError(f"{path} does not hold an RSA private key")
            return cls(issuer, loaded)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as stream:
            stream.write(pem)
        return cls(issuer, key)

    @property
    def kid(self) -> str:
        """The key id: a digest of the public key, so it changes only with the key."""
        public = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return hashlib.sha256(public).hexdigest()[:16]

    def jwks(self) -> dict[str, Any]:
        jwk = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        jwk.update(kid=self.kid, use="sig", alg="RS256")
        return {"keys": [jwk]}

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": self.issuer.rstrip("/") + JWKS_PATH,
            "id_token_signing_alg_values_supported": ["RS256"],
            "subject_types_supported": ["public"],
            "response_types_supported": ["token"],
        }

    def issue(
        self, user: str, *, admin: bool = False, seconds: int = TOKEN_SECONDS, **claims: Any
    ) -> str:
        """A token for ``user`` (its ``sub``); ``admin`` puts the user in the admin group of
        the default admin rule (``cognito:groups`` holding ``hopgraph-admin``)."""
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": user,
            "iat": now,
            "exp": now + seconds,
            "jti": uuid.uuid4().hex,
            "token_use": "id",
        }
        if admin:
            payload[DEFAULT_ADMIN_CLAIM] = [DEFAULT_ADMIN_VALUE]
        payload.update(claims)
        return jwt.encode(payload, self.key, algorithm="RS256", headers={"kid": self.kid})

    def verifier(self) -> TokenVerifier:
        """A verifier of this issuer's tokens that reads the keys directly (fetching them over
        HTTP from the server that is asking would be a loop)."""
        return TokenVerifier(self.issuer, [self.audience], StaticKeys(self.jwks()))


def login_secret(data_dir: Path) -> str:
    """The strict mode's login secret, ``data_dir/login-secret`` (created if missing, readable
    by its owner only): whoever can read it may ask the token route for any user's token."""
    path = data_dir / SECRET_FILE
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as stream:
        stream.write(secret + "\n")
    return secret


class IssuerEndpoints:
    """ASGI middleware serving the issuer's discovery, JWKS and token routes before ``app``;
    with ``secret``, the token route signs only for a request that carries it."""

    def __init__(self, app: ASGIApp, issuer: LocalIssuer, secret: str | None = None) -> None:
        self.app = app
        self.issuer = issuer
        self.secret = secret

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope.get("path"), scope.get("method")
        if scope["type"] != "http" or path not in (DISCOVERY_PATH, JWKS_PATH, TOKEN_PATH):
            await self.app(scope, receive, send)
            return
        if path == TOKEN_PATH and method == "POST":
            response = await self._token(Request(scope, receive))
        elif path != TOKEN_PATH and method in ("GET", "HEAD"):
            body = self.issuer.discovery() if path == DISCOVERY_PATH else self.issuer.jwks()
            response = JSONResponse(body)
        else:
            response = JSONResponse({"message": "method not allowed"}, 405)
        await response(scope, receive, send)

    async def _token(self, request: Request) -> JSONResponse:
        try:
            doc = json.loads(await request.body() or b"{}")
        except ValueError:
            doc = None
        if self.secret is not None:
            given = doc.get("secret") if isinstance(doc, dict) else None
            if not isinstance(given, str) or not hmac.compare_digest(
                given.encode("utf-8", "replace"), self.secret.encode()
            ):
                message = (
                    f'strict mode: send {{"user": NAME, "secret": SECRET}}, SECRET the '
                    f"contents of {SECRET_FILE} in the stack's data folder (hopgraph login does)"
                )
                return JSONResponse({"message": message}, 403)
        user = doc.get("user", DEFAULT_USER) if isinstance(doc, dict) else None
        if not isinstance(user, str) or not _a_name(user):
            message = f'send {{"user": NAME}}, NAME 1 to {MAX_USER_LENGTH} characters'
            return JSONResponse({"message": message}, 400)
        admin = doc.get("admin", False) if isinstance(doc, dict) else False
        if not isinstance(admin, bool):  # "false" is a string, and bool("false") is True
            return JSONResponse({"message": 'send "admin": true or false (a JSON boolean)'}, 400)
        token = self.issuer.issue(user, admin=admin)
        expires_at = jwt.decode(token, options={"verify_signature": False})["exp"]
        return JSONResponse({"token": token, "user": user, "expires_at": expires_at})


def _a_name(user: str) -> bool:
    """A user name a token can carry: text (no lone surrogate: JSON allows ``"\\ud800"``, UTF-8
    does not), not blank, not too long."""
    if not user.strip() or len(user) > MAX_USER_LENGTH:
        return False
    try:
        user.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
