"""A local API Gateway WebSocket API: real sockets in front of the same Lambda handler.

Clients connect to ``ws://host:port/{stage}`` (``?run_id=`` and all); each connection, frame
and close becomes the API Gateway event the deployed handler gets (infra/gateway/ws_events.py), and
the handler runs in a worker thread so the gateway keeps serving while it works. Like API
Gateway, the gateway

- runs the ``$connect`` Lambda authorizer first when given one (infra/gateway/ws_authorizer.py:
  401 without a token, 403 for a denying policy);
- answers the handshake only after ``$connect`` returned 2xx, and with the handler's status
  otherwise (the client sees e.g. HTTP 404 and no connection);
- selects routes on ``$request.body.action`` (unknown, absent or not JSON: ``$default``);
- sends a route's return body only for routes configured two-way (none by default, as in
  template.yaml), and ``{"message": "Internal server error", ...}`` when a handler raises;
- serves the Management API, ``POST``/``GET``/``DELETE /{stage}/@connections/{id}``, with
  GoneException (410) for a connection that is closed, unknown, or still in ``$connect``,
  and PayloadTooLargeException (413) over 128 KB; boto3's own ``apigatewaymanagementapi``
  client reaches it with ``endpoint_url=gateway.management_endpoint``;
- closes a connection whose client sends a message over 128 KB (1009).

The handlers post replies to ``HOPGRAPH_WS_ENDPOINT``; set it to ``management_endpoint``
(the deployed stack sets the stage's own): without it they would build
``https://{domainName}/{stage}`` from the event, as on AWS, and this gateway speaks plain HTTP.

Why uvicorn: the Management API is plain HTTP ``POST`` with a body, on the same host and stage
path as the WebSocket URL, and the ``websockets`` server refuses any request with a body
during its handshake parsing. uvicorn serves HTTP and WebSocket on one port, its WebSocket
protocol is the ``websockets`` library's (``ws="websockets-sansio"``), and it supports the
ASGI denial-response extension that a refused ``$connect`` needs.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from types import TracebackType
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from infra.gateway.ws_authorizer import ConnectAuthorizer, Refused
from infra.gateway.ws_connections import MAX_MESSAGE_BYTES, LiveConnection, ManagementApi
from infra.gateway.ws_events import (
    ConnectionInfo,
    Stage,
    body_of,
    internal_error,
    now_ms,
    status_of,
)
from infra.stack.lambda_context import LambdaContext

Handler = Callable[[dict[str, Any], Any], Any]
_REMEMBERED_CLOSES = 1024
log = logging.getLogger("hopgraph.local.ws")


def default_handler() -> Handler:
    from functions.websocket.handler import handler

    return handler


class LocalWebSocketGateway:
    """API Gateway's WebSocket API on ``host:port`` (port 0: a free one), for one handler.

    ``routes`` are the route keys selectable by ``action`` (default: the handler module's
    ``ROUTES``); ``two_way_routes`` those whose return body is sent back to the client.
    Use ``async with``/``await start()`` in an event loop, or ``with``/``run_in_thread()``
    from synchronous code (tests, the local stack).
    """

    def __init__(
        self,
        handler: Handler | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        stage: str = "local",
        *,
        routes: Collection[str] | None = None,
        two_way_routes: Collection[str] = (),
        api_id: str = "local",
        authorizer: ConnectAuthorizer | None = None,
    ) -> None:
        self.handler = handler or default_handler()
        self.authorizer = authorizer
        """The ``$connect`` Lambda authorizer, run before ``$connect`` (None: no authorizer)."""
        self.host = host
        self.port = port
        self.stage = Stage(stage, api_id)
        self.routes = frozenset(routes if routes is not None else _module_routes(self.handler))
        self.two_way_routes = frozenset(two_way_routes)
        self._live: dict[str, LiveConnection] = {}
        self._closed: OrderedDict[str, None] = OrderedDict()
        self._closed_changed = threading.Condition()
        self._management = ManagementApi(stage, self._live)
        self._server: uvicorn.Server | None = None
        self._serving: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None

    # -- addresses -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Where WebSocket clients connect."""
        return f"ws://{self.host}:{self.port}/{self.stage.name}"

    @property
    def management_endpoint(self) -> str:
        """The ``endpoint_url`` of an ``apigatewaymanagementapi`` client for this gateway."""
        return f"http://{self.host}:{self.port}/{self.stage.name}"

    def connection_ids(self) -> list[str]:
        """The ids of the open connections, oldest first."""
        return [cid for cid, live in list(self._live.items()) if not live.closed]

    def wait_disconnected(self, connection_id: str, timeout: float = 5.0) -> bool:
        """Block until ``connection_id`` has closed and its ``$disconnect`` has returned."""
        with self._closed_changed:
            return self._closed_changed.wait_for(lambda: connection_id in self._closed, timeout)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until no connection is open and every ``$disconnect`` has returned."""
        with self._closed_changed:
            return self._closed_changed.wait_for(lambda: not self._live, timeout)

    # -- lifecycle (asyncio) -------------------------------------------------------------------
    async def start(self) -> None:
        """Bind and start serving; returns once the gateway accepts connections."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._asgi,
            ws="websockets-sansio",
            ws_max_size=MAX_MESSAGE_BYTES,
            interface="asgi3",
            lifespan="off",
            proxy_headers=False,
            access_log=False,  # one line per posted event would drown the local stack's log
            log_config=None,  # leave the process's logging as its owner configured it
        )
        _quiet_denials()
        self._server = uvicorn.Server(config)
        self._serving = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:  # uvicorn offers no startup event to await
            if self._serving.done():
                self._serving.result()  # raises what stopped it
                raise RuntimeError("the WebSocket gateway stopped while starting")
            await asyncio.sleep(0.005)
        log.info("WebSocket gateway on %s (management: %s)", self.url, self.management_endpoint)

    async def stop(self) -> None:
        """Close every connection (each gets its ``$disconnect``) and stop serving."""
        if self._server is None or self._serving is None:
            return
        self._server.should_exit = True
        await self._serving
        self._server = self._serving = None

    async def serve(self) -> None:
        """Start, then serve until :meth:`close` is called (from any thread)."""
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        await self.start()
        try:
            await self._stop_requested.wait()
        finally:
            await self.stop()

    async def __aenter__(self) -> LocalWebSocketGateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- lifecycle (threads) -------------------------------------------------------------------
    def run_in_thread(self, timeout: float = 10.0) -> LocalWebSocketGateway:
        """Serve from a daemon thread with its own event loop; returns once serving."""
        failure: list[BaseException] = []

        def main() -> None:
            try:
                asyncio.run(self.serve())
            except BaseException as exc:  # reported to the starting thread below
                failure.append(exc)

        self._thread = threading.Thread(target=main, name="ws-gateway", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not (self._server is not None and self._server.started):
            if failure or not self._thread.is_alive() or time.monotonic() > deadline:
                cause = failure[0] if failure else None
                raise RuntimeError("the WebSocket gateway did not start") from cause
            self._thread.join(0.005)
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Stop a gateway started by :meth:`run_in_thread` or :meth:`serve`."""
        loop, stop = self._loop, self._stop_requested
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> LocalWebSocketGateway:
        return self.run_in_thread()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- ASGI ----------------------------------------------------------------------------------
    async def _asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._connection(WebSocket(scope, receive, send))
        elif scope["type"] == "http":
            if not _from_this_machine(scope):  # the Management API posts to any connection
                response: Response = JSONResponse({"message": "Forbidden"}, 403)
            else:
                response = await self._management.respond(Request(scope, receive))
            await response(scope, receive, send)

    async def _invoke(self, event: dict[str, Any]) -> Any:
        """Run the handler off the event loop, as a Lambda invocation would run it."""
        context = LambdaContext(function_name="hopgraph-websocket-local")
        return await asyncio.to_thread(self.handler, event, context)

    # -- WebSocket connections -----------------------------------------------------------------
    async def _connection(self, ws: WebSocket) -> None:
        if ws.url.path.rstrip("/") not in ("", f"/{self.stage.name}"):
            # API Gateway answers a path that is not a stage with 403. The bare "/" is also
            # accepted: the command line's default URL has no stage.
            await ws.send_denial_response(JSONResponse({"message": "Forbidden"}, 403))
            return
        info = ConnectionInfo(
            domain_name=ws.headers.get("host", f"{self.host}:{self.port}"),
            source_ip=ws.client.host if ws.client else "127.0.0.1",
            user_agent=ws.headers.get("user-agent", ""),
        )
        accepted = await self._connect(ws, info)
        if accepted is None:
            return
        # Listed before the handshake ends: the client may make the service post to it the
        # moment it sees the connection open, and those posts wait for `opened`.
        live = LiveConnection(info, ws)
        self._live[info.connection_id] = live
        code, reason = 1006, ""
        try:
            await ws.accept(subprotocol=accepted or None)
            live.opened.set()
            code, reason = await self._receive_all(live)
        finally:
            live.closed = True
            await self._disconnect(info, code, reason)

    async def _connect(self, ws: WebSocket, info: ConnectionInfo) -> str | None:
        """Run ``$connect``; refuse the handshake unless it returned 2xx. Accepted: the
        subprotocol to answer with ("" for none); refused: None."""
        headers = [(k.title(), v) for k, v in ws.headers.items()]
        event = self.stage.connect_event(info, headers, list(ws.query_params.multi_items()))
        if self.authorizer is not None:
            decision = await self._authorize(event)
            if isinstance(decision, Refused):
                await ws.send_denial_response(JSONResponse(decision.body, decision.status))
                return None
            event["requestContext"]["authorizer"] = decision
        try:
            result = await self._invoke(event)
        except Exception:
            log.exception("$connect handler raised")
            result = {"statusCode": 500, "body": json.dumps({"message": "Internal server error"})}
        status = status_of(result)
        if not 200 <= status < 300:
            body = body_of(result) or ""
            await ws.send_denial_response(Response(body, status, media_type="application/json"))
            return None
        return _subprotocol(result) or ""

    async def _authorize(self, event: dict[str, Any]) -> dict[str, Any] | Refused:
        """Run the ``$connect`` authorizer off the event loop, as its own Lambda function."""
        assert self.authorizer is not None
        context = LambdaContext(function_name="hopgraph-ws-authorizer-local")
        return await asyncio.to_thread(self.authorizer.authorize, event, context)

    async def _receive_all(self, live: LiveConnection) -> tuple[int, str]:
        """Hand each frame to the handler, in order, until the client goes; its close code."""
        while True:
            message = await live.socket.receive()
            if message["type"] == "websocket.disconnect":
                return int(message.get("code") or 1005), str(message.get("reason") or "")
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            live.info.last_active_at = now_ms()
            await self._message(live, data)

    async def _message(self, live: LiveConnection, data: str | bytes) -> None:
        event = self.stage.message_event(live.info, data, self.routes)
        context = event["requestContext"]
        try:
            result = await self._invoke(event)
        except Exception:
            log.exception("route %s raised", context["routeKey"])
            await live.send(json.dumps(internal_error(context)).encode())
            return
        body = body_of(result)
        if context["routeKey"] in self.two_way_routes and body is not None:
            await live.send(body.encode())

    async def _disconnect(self, info: ConnectionInfo, code: int, reason: str) -> None:
        try:
            await self._invoke(self.stage.disconnect_event(info, code, reason))
        except Exception:
            log.exception("$disconnect handler raised")
        with self._closed_changed:
            self._live.pop(info.connection_id, None)
            self._closed[info.connection_id] = None
            while len(self._closed) > _REMEMBERED_CLOSES:
                self._closed.popitem(last=False)
            self._closed_changed.notify_all()


class _SpuriousDenialError(logging.Filter):
    """Drops the error uvicorn's websockets-sansio protocol logs after every denial response
    (the client gets the denial right; the protocol just never marks the handshake done:
    Kludex/uvicorn PR #3138). A refused ``$connect`` is normal here, not an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "ASGI callable returned without completing handshake."


def _quiet_denials() -> None:
    from infra.stack.console import redact_tokens_in_logs

    uvicorn_errors = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _SpuriousDenialError) for f in uvicorn_errors.filters):
        uvicorn_errors.addFilter(_SpuriousDenialError())
    redact_tokens_in_logs()  # its handshake lines carry ?token=<JWT>


def _subprotocol(result: Any) -> str | None:
    """The subprotocol a ``$connect`` handler chose (its ``Sec-WebSocket-Protocol`` header)."""
    headers = result.get("headers") if isinstance(result, dict) else None
    if not isinstance(headers, dict):
        return None
    chosen = {str(k).lower(): v for k, v in headers.items()}.get("sec-websocket-protocol")
    return str(chosen) if chosen else None


def _module_routes(handler: Handler) -> Collection[str]:
    """The route keys the handler's module declares in ``ROUTES`` (template.yaml's routes)."""
    module = sys.modules.get(getattr(handler, "__module__", "") or "")
    return tuple(getattr(module, "ROUTES", ()))


def _from_this_machine(scope: Scope) -> bool:
    """The Management API answers this machine only, whatever address the gateway listens on:
    on AWS it needs IAM credentials; here its caller is the stack itself."""
    client = scope.get("client")
    if not client:
        return True  # an in-process caller (tests' ASGI transports)
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return False
