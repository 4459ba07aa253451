"""Request bodies meet the JSON rule (:mod:`engine.json_rules`) as they are parsed.

FastAPI parses a JSON body with ``request.json()`` before any model sees it, so that is where
the rule goes: one parse, and a body nested 10,000 deep is a 422 that says so instead of
FastAPI's catch-all "error parsing the body" (the parser's RecursionError). Routers opt in
with ``APIRouter(route_class=JsonRulesRoute)``, FastAPI's documented way to give routes a
custom ``Request``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from engine import json_rules
from engine.errors import JsonRuleError, transport_of

BODY: json_rules.Path = ("body",)


class RefusedBody(HTTPException):
    """A body that breaks the JSON rule. An HTTPException only so that FastAPI lets it through
    its body parsing (it turns anything else raised there into a 400); its handler answers
    for the engine error it carries."""

    def __init__(self, error: JsonRuleError) -> None:
        self.error = error
        super().__init__(status_code=transport_of(error).status, detail=str(error))


class JsonRulesRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                # Not JSON at all: json's ValueError goes on to FastAPI, whose 400 names the
                # position (functions.api.errors words it).
                doc = json_rules.parse(body, BODY)
                json_rules.check(doc, BODY)
            except JsonRuleError as exc:
                raise RefusedBody(exc) from None
            self._json = doc
        return self._json


class JsonRulesRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            return await handler(JsonRulesRequest(request.scope, request.receive))

        return checked
