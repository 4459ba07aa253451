"""The command line's tokens: which one it sends to which API.

``hopgraph login`` stores a token per API URL in the user's config folder
(``$HOPGRAPH_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/hopgraph``, else ``~/.config/hopgraph``),
in a file only its owner can read. A command sends, in this order: ``$HOPGRAPH_TOKEN``; the
token stored for its API; else, against the local stack, a token of the default dev user
that the stack's issuer signs when asked (``POST /local/token``), so nobody has to sign in
on a laptop. A deployment has no such route, and a stack started with ``--auth strict``
signs only for whoever sends its login secret (``hopgraph login`` reads it from the stack's
data folder): then the command sends no token, and the API's 401 says to sign in.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

TOKENS_FILE = "tokens.json"
LOCAL_TOKEN_PATH = "/local/token"  # infra/stack/token_issuer.py:TOKEN_PATH (no server imports here)
DEV_USER = "dev"
DEFAULT_SECRET_FILE = ".hopgraph/login-secret"
"""Where ``hopgraph dev --auth strict`` keeps its login secret, with the default --data."""


class LoginFailed(Exception):
    """No token could be had; the message says why and what to do."""


def config_dir() -> Path:
    explicit = os.environ.get("HOPGRAPH_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "hopgraph"


def _key(api: str) -> str:
    return api.rstrip("/")


def _read_all(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


@dataclass(frozen=True)
class StoredToken:
    token: str
    user: str
    expires_at: int | None = None

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= time.time()


def stored_token(api: str) -> StoredToken | None:
    entry = _read_all(config_dir() / TOKENS_FILE).get(_key(api))
    if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
        return None
    expires = entry.get("expires_at")
    return StoredToken(
        entry["token"], str(entry.get("user", "")), expires if isinstance(expires, int) else None
    )


def store_token(api: str, token: StoredToken) -> Path:
    """Keep ``token`` for ``api``; the file is created readable by its owner only."""
    folder = config_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / TOKENS_FILE
    tokens = _read_all(path)
    tokens[_key(api)] = {"token": token.token, "user": token.user, "expires_at": token.expires_at}
    _write(path, tokens)
    return path


def _write(path: Path, tokens: dict[str, Any]) -> None:
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as stream:
        json.dump(tokens, stream, indent=2)
    os.replace(temporary, path)  # a reader never sees half a file


def login_secret(path: str | None) -> str | None:
    """The login secret of a strict local stack: the file at ``path``; else
    ``$HOPGRAPH_LOGIN_SECRET``; else the default data folder's file, if there is one."""
    explicit = os.environ.get("HOPGRAPH_LOGIN_SECRET")
    if path is None and explicit:
        return explicit.strip()
    file = Path(path or DEFAULT_SECRET_FILE)
    try:
        return file.read_text().strip()
    except OSError as exc:
        if path is None:
            return None  # a dev-mode stack wants none
        raise LoginFailed(f"cannot read the login secret {file}: {exc.strerror}") from None


def forget_token(api: str) -> bool:
    """Forget the token stored for ``api``; whether there was one."""
    path = config_dir() / TOKENS_FILE
    tokens = _read_all(path)
    if tokens.pop(_key(api), None) is None:
        return False
    _write(path, tokens)
    return True


def whoami(api: str) -> dict[str, Any]:
    """Who the commands act as on ``api``: the user, where the token comes from, its expiry."""
    explicit = os.environ.get("HOPGRAPH_TOKEN")
    if explicit:
        token, source = explicit, "$HOPGRAPH_TOKEN"
    else:
        stored = stored_token(api)
        if stored is None:
            return {"user": None, "source": "none", "expires_at": None, "expired": False}
        token, source = stored.token, str(config_dir() / TOKENS_FILE)
    claims = _claims(token)
    expires = claims.get("exp")
    expires_at = expires if isinstance(expires, int) else None
    return {
        "user": claims.get("sub") if isinstance(claims.get("sub"), str) else None,
        "source": source,
        "expires_at": expires_at,
        "expired": expires_at is not None and expires_at <= time.time(),
    }


def _claims(token: str) -> dict[str, Any]:
    """A token's claims, read without checking it (the API checks it)."""
    import jwt

    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
    return claims if isinstance(claims, dict) else {}


def local_token(
    api: str,
    user: str,
    admin: bool = False,
    timeout: float = 10.0,
    secret: str | None = None,
) -> StoredToken:
    """A token for ``user`` signed by the local stack's issuer at ``api`` (``secret``: the
    login secret a strict stack wants)."""
    url = _key(api) + LOCAL_TOKEN_PATH
    body: dict[str, Any] = {"user": user, "admin": admin}
    if secret is not None:
        body["secret"] = secret
    try:
        reply = httpx.post(url, json=body, timeout=timeout)
    except httpx.TransportError as exc:
        raise LoginFailed(f"nothing answers at {_key(api)} ({type(exc).__name__})") from None
    if reply.status_code == 404:
        raise LoginFailed(
            f"{_key(api)} signs no tokens (only the local stack does): sign in with your "
            "identity provider and store its token with 'hopgraph login --token TOKEN'"
        )
    try:
        body = reply.json()
    except ValueError:
        body = {}
    if reply.status_code != 200 or not isinstance(body.get("token"), str):
        message = body.get("message") if isinstance(body, dict) else None
        raise LoginFailed(f"the local issuer refused: {message or f'HTTP {reply.status_code}'}")
    expires = body.get("expires_at")
    return StoredToken(body["token"], user, expires if isinstance(expires, int) else None)


def token_for(api: str) -> str | None:
    """The token a command sends to ``api`` (None: none)."""
    explicit = os.environ.get("HOPGRAPH_TOKEN")
    if explicit:
        return explicit
    stored = stored_token(api)
    if stored is not None:
        return stored.token  # an expired one is sent too: the API's 401 says it expired
    try:
        return local_token(api, DEV_USER).token
    except LoginFailed:
        return None
