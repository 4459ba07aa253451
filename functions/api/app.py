"""The FastAPI application factory and the request body limit."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from functions.api import __version__
from functions.api.errors import add_error_schema, error_reply, install_error_handlers

MAX_BODY_BYTES = 1_048_576
"""Bodies above this are refused with 413 before anything parses them."""

DOCS_ASSETS_PATH = "/docs/assets"
"""Where the API serves the files of /docs and /redoc: Swagger UI, ReDoc and the favicon.

They come from the pinned fastapi-offline package, which the Lambda layer ships, instead of
FastAPI's CDN defaults, so the docs work on a machine without internet. The pages link them
below the request's ``root_path``, as FastAPI links ``/openapi.json``, so they also load when
the app is mounted under a prefix. The template gives this path its own route without an
authorizer, like /docs: a browser sends no token for a page's scripts."""

DESCRIPTION = """\
A LangGraph-style workflow engine whose every node step is a durable serverless hop.

Create a graph (`POST /graphs`, any accepted dialect), start a run (`POST /runs`), then follow
it (`GET /runs/{run_id}`, `GET /runs/{run_id}/steps`) or subscribe to its events over the
WebSocket API. Every error has one shape: `{"error": {"type", "message", "problems"?}}`.
"""


class BodyLimit:
    """Refuse request bodies larger than ``limit`` bytes with 413, before any parsing.

    Hand-written because Starlette has no body size limit; a pure ASGI middleware, so the
    body is counted as it arrives rather than trusted from ``Content-Length`` alone."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isascii() and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(int(declared), scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.limit:
                await self._refuse(size, scope, receive, send)
                return
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _refuse(self, size: int, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"the request body is {size} bytes or more; the limit is {self.limit} bytes"
        await error_reply(413, "payload_too_large", message)(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the buffered body once, then defers to the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def create_app(*, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The HTTP API: resource routes, compatibility routes, error mapping, body limit."""
    from functions.api import (
        routes_compat,
        routes_counts,
        routes_graphs,
        routes_history,
        routes_meta,
        routes_pauses,
        routes_runs,
        routes_tasks,
    )
    from functions.dashboard import routes as dashboard

    # FastAPI, with /docs and /redoc pointing at the files served from DOCS_ASSETS_PATH.
    app = FastAPIOffline(
        title="hopgraph",
        version=__version__,
        description=DESCRIPTION,
        # One schema per model in /docs, rather than a "-Input" and an "-Output" twin.
        separate_input_output_schemas=False,
        static_url=DOCS_ASSETS_PATH,
        # No online validator badge: it would send the document's URL to another host.
        swagger_ui_parameters={"validatorUrl": None},
    )
    # routes_counts before routes_runs: /runs/counts is no run id
    for module in (routes_graphs, routes_counts, routes_runs, routes_pauses, routes_tasks,
                   routes_history, routes_meta, routes_compat, dashboard):  # fmt: skip
        app.include_router(module.router)
    install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    build_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        # Built on first request of /openapi.json (FastAPI caches it), not at cold start.
        if app.openapi_schema is None:
            app.openapi_schema = add_error_schema(build_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
