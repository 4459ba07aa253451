"""boto3 clients, built lazily on first use and cached for the life of the process.

Never at import time: a handler module must import without credentials or network, and
tests swap clients with :func:`override` instead of patching modules. Endpoints come from
boto3's own configuration, so ``AWS_ENDPOINT_URL`` (and ``AWS_ENDPOINT_URL_<SERVICE>``)
points everything at the local stack's moto server.
"""

from __future__ import annotations

import threading
from typing import Any

_clients: dict[tuple[str, str | None], Any] = {}
_lock = threading.Lock()


def client(service: str, endpoint_url: str | None = None) -> Any:
    """The shared client for ``service`` (and a specific endpoint, if given)."""
    key = (service, endpoint_url)
    found = _clients.get(key)
    if found is not None:
        return found
    with _lock:
        if key not in _clients:
            import boto3  # deferred: keeps handler imports cheap and credential-free
            from botocore.config import Config

            config = Config(retries={"mode": "standard", "max_attempts": 3}, tcp_keepalive=True)
            session: Any = boto3.session.Session()  # the stubs type only literal names
            _clients[key] = session.client(service, endpoint_url=endpoint_url, config=config)
        return _clients[key]


def override(service: str, value: Any, endpoint_url: str | None = None) -> None:
    """Use ``value`` as the client for ``service`` (tests, the local stack)."""
    _clients[(service, endpoint_url)] = value


def reset() -> None:
    """Forget every client (tests; a new moto context)."""
    _clients.clear()
