"""``/ws`` and ``/ws/{run_id}`` on the local stack's HTTP port: where clients of earlier
engines of this kind stream a run's progress from.

They are the same WebSocket routes as the local gateway's: each connection is relayed to the
gateway, ``/ws/{run_id}`` as ``?run_id={run_id}`` (subscribed at ``$connect``), so the same
handler answers with the same events, limits and errors, and a refused ``$connect`` refuses
this handshake with the same status and body.

A client of ``/ws/{run_id}`` sends nothing: its ``$connect`` (``?run_id=``, and ``?after=``
passed on) has the run replayed once the connection is up (functions/websocket/routes.py),
so it gets what every subscriber gets: the committed steps from the log, then the run's
status (a finished run's final event at once), then the live steps; events may repeat, and
clients dedupe by ``seq``.

Only the local stack serves these paths; the deployed HTTP API has no WebSocket, and clients
there use the WebSocket API's URL.

Why a relay rather than the gateway's own code: a gateway connection is served on the
gateway's event loop, where its ``@connections`` API sends on it; the HTTP API is served by
another uvicorn, on another loop. Relaying keeps each socket on the loop that owns it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

PATH = "/ws"
_NOT_RELAYED = frozenset(
    {
        "host",
        "connection",
        "upgrade",
        "content-length",
        "user-agent",  # passed on as the client's own User-Agent header
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",  # passed on as the requested subprotocols
    }
)


def with_compat_websockets(app: ASGIApp, gateway_url: str) -> ASGIApp:
    """``app`` (the HTTP API), plus the ``/ws`` paths relayed to the gateway at
    ``gateway_url`` (``ws://host:port/{stage}``); every other request goes to ``app``."""

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        target = upstream_url(gateway_url, scope) if scope["type"] == "websocket" else None
        if target is None:
            await app(scope, receive, send)
            return
        await relay(WebSocket(scope, receive, send), target)

    return asgi


def upstream_url(gateway_url: str, scope: Scope) -> str | None:
    """The gateway URL a ``/ws`` path connects to (None: not one of these paths)."""
    path = str(scope.get("path", "")).rstrip("/")
    if path == PATH:
        run_id = None
    elif path.startswith(PATH + "/") and "/" not in path[len(PATH) + 1 :]:
        run_id = path[len(PATH) + 1 :]
    else:
        return None
    query = parse_qsl(bytes(scope.get("query_string", b"")).decode("latin-1"))
    if run_id is not None:
        query = [(k, v) for k, v in query if k != "run_id"] + [("run_id", run_id)]
    return gateway_url + (f"?{urlencode(query, quote_via=quote)}" if query else "")


async def relay(client: WebSocket, target: str) -> None:
    """Open ``target`` for ``client``, answer its handshake as the gateway answered, then
    pass messages both ways until one side closes (its close code is passed on)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    headers = [(k, v) for k, v in client.headers.items() if k.lower() not in _NOT_RELAYED]
    try:
        upstream = await connect(
            target,
            additional_headers=headers,
            user_agent_header=client.headers.get("user-agent"),
            subprotocols=client.scope.get("subprotocols") or None,
            compression=None,
            max_size=None,  # the gateway enforces API Gateway's limits itself
            proxy=None,  # the gateway is on this host: never through an HTTP proxy
        )
    except InvalidStatus as refused:
        answer = refused.response
        denial = Response(bytes(answer.body), answer.status_code, media_type="application/json")
        await client.send_denial_response(denial)
        return
    except (OSError, TimeoutError):
        await client.send_denial_response(JSONResponse({"message": "Bad Gateway"}, 502))
        return
    async with upstream:
        await client.accept(subprotocol=upstream.subprotocol)
        await _pump(client, upstream)


async def _pump(client: WebSocket, upstream: Any) -> None:
    to_gateway = asyncio.create_task(_client_to_gateway(client, upstream))
    to_client = asyncio.create_task(_gateway_to_client(upstream, client))
    _, pending = await asyncio.wait({to_gateway, to_client}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def _client_to_gateway(client: WebSocket, upstream: Any) -> None:
    try:
        while True:
            message = await client.receive()
            if message["type"] == "websocket.disconnect":
                await upstream.close(int(message.get("code") or 1000))
                return
            text = message.get("text")
            await upstream.send(text if text is not None else message.get("bytes") or b"")
    except WebSocketDisconnect as gone:
        await upstream.close(gone.code)


async def _gateway_to_client(upstream: Any, client: WebSocket) -> None:
    from websockets.exceptions import ConnectionClosed

    try:
        async for message in upstream:
            if isinstance(message, str):
                await client.send_text(message)
            else:
                await client.send_bytes(message)
    except ConnectionClosed:
        pass
    code = upstream.close_code or 1000
    with contextlib.suppress(Exception):  # the client may be gone already
        await client.close(code if code not in (1005, 1006) else 1000)
