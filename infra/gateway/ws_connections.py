"""The local gateway's open connections, and the Management API that reaches them.

``POST``/``GET``/``DELETE /{stage}/@connections/{connectionId}`` answer as API Gateway's
do, errors included: a JSON body and the ``x-amzn-ErrorType`` header botocore's rest-json
parser reads the code from, so boto3 raises ``client.exceptions.GoneException`` and co.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket

from infra.gateway.ws_events import ConnectionInfo, now_ms

MAX_MESSAGE_BYTES = 128 * 1024  # API Gateway's WebSocket message size quota
HANDSHAKE_TIMEOUT_S = 10.0


@dataclass
class LiveConnection:
    """A connection past ``$connect``: what its events say, and its socket."""

    info: ConnectionInfo
    socket: WebSocket
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Serializes sends: one message at a time, in the order they were posted."""
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the handshake is answered; posts that arrive before wait for it."""
    closed: bool = False
    """The client is gone (the connection stays listed until its ``$disconnect`` returns)."""

    async def send(self, data: bytes) -> bool:
        """One message to the client, as text if it is UTF-8 (API Gateway sends JSON as
        text frames); False if the connection closed meanwhile."""
        try:
            text: str | None = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        try:
            await asyncio.wait_for(self.opened.wait(), HANDSHAKE_TIMEOUT_S)
            async with self.lock:
                if text is not None:
                    await self.socket.send_text(text)
                else:
                    await self.socket.send_bytes(data)
        except Exception:  # closed under us: whoever posted sees the connection as gone
            return False
        self.info.last_active_at = now_ms()
        return True

    async def close(self, code: int = 1000) -> bool:
        try:
            async with self.lock:
                await self.socket.close(code)
        except Exception:
            return False
        return True

    def describe(self) -> dict[str, Any]:
        """The GetConnection answer."""
        return {
            "connectedAt": _iso(self.info.connected_at),
            "identity": {"sourceIp": self.info.source_ip, "userAgent": self.info.user_agent},
            "lastActiveAt": _iso(self.info.last_active_at),
        }


class ManagementApi:
    """The @connections API of one stage, over the gateway's open connections."""

    def __init__(self, stage: str, connections: Mapping[str, LiveConnection]) -> None:
        self.connections = connections
        # Also without the stage: API Gateway serves a custom domain's API at its root.
        self._path = re.compile(rf"^(?:/{re.escape(stage)})?/@connections/([^/]+)$")

    async def respond(self, request: Request) -> Response:
        # The raw path: a connection id may hold characters the client percent-encoded.
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        match = self._path.match(raw_path.decode("latin-1"))
        if match is None:
            return aws_error(403, "ForbiddenException", "Forbidden")
        live = self.connections.get(unquote(match.group(1)))
        if live is None or live.closed:
            return aws_error(410, "GoneException", "the connection is gone")
        if request.method == "POST":
            return await self._post(live, await request.body())
        if request.method == "GET":
            return JSONResponse(live.describe())
        if request.method == "DELETE":  # its $disconnect follows, as on API Gateway
            if not await live.close(1000):
                return aws_error(410, "GoneException", "the connection is gone")
            return Response(status_code=204)
        return aws_error(403, "ForbiddenException", f"{request.method} is not supported")

    async def _post(self, live: LiveConnection, data: bytes) -> Response:
        if len(data) > MAX_MESSAGE_BYTES:
            return aws_error(413, "PayloadTooLargeException", "Message too long")
        if not await live.send(data):
            return aws_error(410, "GoneException", "the connection is gone")
        return Response(status_code=200)


def aws_error(status: int, code: str, message: str) -> Response:
    """An error botocore's rest-json parser maps to ``client.exceptions.<code>``."""
    return JSONResponse({"message": message}, status, headers={"x-amzn-ErrorType": code})


def _iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="milliseconds")
