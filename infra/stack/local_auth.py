"""Who calls the local stack: its token issuer, and its two modes.

The local stack signs tokens with its own key (:class:`infra.stack.token_issuer.LocalIssuer`, the
key kept in the data folder, so tokens outlive a restart), and checks every request with the
same code as on AWS: the HTTP API's JWT authorizer stand-in (infra/gateway/http_authorizer.py) in
front of the app, and the WebSocket ``$connect`` authorizer function
(functions/auth/authorizer.py) run by the local gateway as API Gateway runs it.

Two modes, local only (there is no such choice on AWS):

- ``dev`` (the default): a request or connection that carries no token at all acts as the
  default dev user, so curl, the README walkthrough and clients that send no token work
  unchanged; a token that is given is checked, and refused if bad;
- ``strict``: no token, no entry: 401, exactly as API Gateway answers; and the token route
  signs only for a request that carries the login secret kept in the data folder
  (``hopgraph login`` reads it there).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.gateway.http_authorizer import HttpApiJwtAuthorizer, JwtAuthorizerMiddleware
from infra.gateway.ws_authorizer import ConnectAuthorizer, identity_sources
from infra.stack.token_issuer import (
    DEFAULT_USER,
    SECRET_FILE,
    TOKEN_SECONDS,
    IssuerEndpoints,
    LocalIssuer,
    login_secret,
)

DEV = "dev"
STRICT = "strict"
MODES = (DEV, STRICT)


@dataclass
class DevToken:
    """The default dev user's token, signed once and signed again when half its life is
    gone (signing costs an RSA operation; every tokenless request needs one)."""

    issuer: LocalIssuer
    user: str = DEFAULT_USER
    _token: str = ""
    _renew_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self) -> str:
        with self._lock:
            if not self._token or time.time() >= self._renew_at:
                self._token = self.issuer.issue(self.user)
                self._renew_at = time.time() + TOKEN_SECONDS / 2
            return self._token


@dataclass
class LocalAuth:
    """The local stack's issuer and mode, and the authorizers built from them."""

    issuer: LocalIssuer
    mode: str = DEV
    secret: str | None = None
    """The login secret the token route wants (strict mode only)."""
    secret_path: Path | None = None

    @classmethod
    def in_folder(cls, data_dir: Path, issuer_url: str, mode: str = DEV) -> LocalAuth:
        if mode not in MODES:
            raise ValueError(f"unknown auth mode {mode!r}; choose one of {', '.join(MODES)}")
        issuer = LocalIssuer.in_folder(data_dir, issuer_url)
        if mode == STRICT:
            return cls(issuer, mode, login_secret(data_dir), data_dir / SECRET_FILE)
        return cls(issuer, mode)

    @property
    def dev_token(self) -> Callable[[], str] | None:
        """What a request without a token acts with (None in strict mode: refused)."""
        return DevToken(self.issuer) if self.mode == DEV else None

    def environment(self) -> dict[str, str]:
        """The settings the handlers read, as template.yaml sets them on AWS: who issues
        the accepted tokens, for which audience."""
        return {
            "HOPGRAPH_AUTH_ISSUER": self.issuer.issuer,
            "HOPGRAPH_AUTH_AUDIENCE": self.issuer.audience,
        }

    def http_app(self, app: Any, open_routes: list[str]) -> Any:
        """``app`` behind the HTTP API's JWT authorizer, with the issuer's own routes
        (discovery, JWKS, ``POST /local/token``) in front, which need no token."""
        authorizer = HttpApiJwtAuthorizer(
            self.issuer.verifier(), open_routes, default_token=self.dev_token
        )
        return IssuerEndpoints(JwtAuthorizerMiddleware(app, authorizer), self.issuer, self.secret)

    def connect_authorizer(self, template_doc: dict[str, Any]) -> ConnectAuthorizer:
        """The WebSocket ``$connect`` authorizer: the deployed function, handed this
        issuer's keys directly (fetching them over HTTP from the stack's own HTTP server
        would make the gateway depend on it having started)."""
        from functions.auth import authorizer

        authorizer.install(self.issuer.verifier())
        return ConnectAuthorizer(
            authorizer.handler, identity_sources(template_doc), dev_token=self.dev_token
        )

    def describe(self) -> str:
        """The banner's line: which mode is on, and what it means."""
        if self.mode == DEV:
            return f"dev (no token: user '{DEFAULT_USER}'; bad tokens refused; --auth strict)"
        return (
            "strict (every request needs a token: hopgraph login --user NAME; "
            f"tokens are signed for who can read {self.secret_path})"
        )
