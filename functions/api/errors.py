"""The one place where errors become HTTP responses.

Every error reply, whatever raised it, has one shape (:class:`ErrorResponse`)::

    {"error": {"type": "graph_invalid", "message": "...",
               "problems": [{"location": "nodes.review.tool", "message": "unknown tool ..."}]}}

Engine errors answer with the status and ``type`` of their row in the one error table
(:mod:`engine.errors`, shared with the WebSocket replies and the queue consumers); this module
only words the body: a graph's ``problems``, the location of a JSON rule break, the existing
run of an idempotency conflict. What FastAPI and Starlette raise themselves:

| raised                                  | status | ``type``            |
|-----------------------------------------|--------|---------------------|
| RequestValidationError (bad fields)     | 422    | request_invalid     |
| RequestValidationError (bad JSON)       | 400    | invalid_json        |
| body over the limit (``BodyLimit``)     | 413    | payload_too_large   |
| an unknown route / method               | 404/405| not_found / ...     |
| anything else                           | 500    | internal            |

Routes never catch engine errors themselves: they raise, and the handlers below answer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from engine.errors import (
    GraphValidationError,
    HopgraphError,
    IdempotencyConflict,
    JsonRuleError,
    QuotaExceeded,
    client_message,
    transport_of,
)
from functions.api.json_body import RefusedBody

logger = logging.getLogger("hopgraph.api")


class ProblemModel(BaseModel):
    location: str = Field(
        description="Where the problem is: a path into the graph document as sent "
        "(`nodes.review.tool`, `edges[2].to`), or into the request "
        "(`body.graph_id`, `query.limit`, `path.run_id`)."
    )
    message: str


class ErrorBody(BaseModel):
    type: str = Field(description="A stable, machine-readable error kind.")
    message: str = Field(description="What went wrong, for a person.")
    problems: list[ProblemModel] | None = Field(
        default=None, description="Every problem found (422 only), each with its location."
    )
    run_id: str | None = Field(
        default=None,
        description="`idempotency_conflict` only: the run the idempotency key already names.",
    )
    quota: str | None = Field(
        default=None,
        description="`quota_exceeded` only: the quota reached (`runs_in_flight`, "
        "`requests_per_second`).",
    )
    limit: int | None = Field(default=None, description="`quota_exceeded` only: its limit.")
    differs: list[str] | None = Field(
        default=None,
        description="`idempotency_conflict` only: what differs from that run's request "
        "(`input`, `max_steps`).",
    )


class ErrorResponse(BaseModel):
    """The body of every error reply."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "type": "graph_invalid",
                        "message": "the graph definition has 2 problems",
                        "problems": [
                            {
                                "location": "nodes.review.tool",
                                "message": "unknown tool 'detect_issue' "
                                "(did you mean 'detect_issues'?)",
                            },
                            {"location": "edges.review", "message": "unknown target 'scor'"},
                        ],
                    }
                },
                {"error": {"type": "not_found", "message": "run 'r_0123' not found"}},
            ]
        }
    )

    error: ErrorBody


_DESCRIPTIONS = {
    400: "The body is not valid JSON.",
    404: "No such graph or run.",
    409: "The request conflicts with the resource's current state, or reuses an "
    "idempotency key with a different request (`idempotency_conflict`: `run_id`, `differs`).",
    413: "The body, or the run state it carries, is larger than the limit.",
    422: "The request is invalid; `problems` lists every problem with its location. "
    "JSON nested deeper than 64 levels, or holding a string or key that is not valid "
    "Unicode (a lone surrogate), is refused here too.",
    503: "The store is briefly unavailable; retry.",
}


_ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorResponse"}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries declaring the error shape for ``codes``.

    A schema reference rather than ``"model": ErrorResponse``: for a model, FastAPI builds a
    pydantic field per route and status code at import, about 100 ms of this API's cold
    start; the schema itself is added once, when the document is built
    (:func:`add_error_schema`)."""
    return {
        code: {
            "description": _DESCRIPTIONS[code],
            "content": {"application/json": {"schema": _ERROR_SCHEMA}},
        }
        for code in codes
    }


def add_error_schema(openapi: dict[str, Any]) -> dict[str, Any]:
    """Put :class:`ErrorResponse` (and the models it uses) into ``openapi``'s components, and
    the 401 of every operation that needs a token (:func:`add_unauthorized_responses`)."""
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schema.pop("$defs", {}))
    schemas["ErrorResponse"] = schema
    return add_unauthorized_responses(openapi)


GATEWAY_REFUSAL = {
    "title": "GatewayRefusal",
    "description": "What API Gateway answers when its authorizer refuses a request.",
    "type": "object",
    "properties": {"message": {"type": "string", "examples": ["Unauthorized"]}},
    "required": ["message"],
}
UNAUTHORIZED_DESCRIPTION = (
    "No token, or a token that is not valid (expired, another issuer or audience, a bad "
    "signature). API Gateway's JWT authorizer refuses it before the API runs, with "
    '`{"message": "Unauthorized"}` and a `www-authenticate` header saying why.'
)


def add_unauthorized_responses(openapi: dict[str, Any]) -> dict[str, Any]:
    """Declare 401 on every operation with a security requirement (the bearer token)."""
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    schemas["GatewayRefusal"] = GATEWAY_REFUSAL
    refusal = {"anyOf": [{"$ref": "#/components/schemas/GatewayRefusal"}, _ERROR_SCHEMA]}
    for operations in openapi.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and operation.get("security"):
                operation.setdefault("responses", {})["401"] = {
                    "description": UNAUTHORIZED_DESCRIPTION,
                    "content": {"application/json": {"schema": refusal}},
                }
    return openapi


def error_reply(
    status: int,
    kind: str,
    message: str,
    problems: Iterable[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    """A JSON error reply in the one shape of :class:`ErrorResponse`."""
    body: dict[str, Any] = {"type": kind, "message": message}
    if problems is not None:
        body["problems"] = [{"location": loc, "message": msg} for loc, msg in problems]
    body.update(extra or {})
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _location(loc: Sequence[Any]) -> str:
    """``("body", "nodes", 0, "tool")`` -> ``body.nodes[0].tool``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "$"


def _json_message(error: dict[str, Any]) -> str:
    """``the body is not valid JSON: Expecting value (at character 12)``."""
    message = "the body is not valid JSON"
    detail = (error.get("ctx") or {}).get("error")
    if detail:
        message += f": {detail}"
    position = error.get("loc", ())[-1:]
    if position and isinstance(position[0], int):
        message += f" (at character {position[0]})"
    return message


# -- handlers -------------------------------------------------------------------------------
def engine_error_reply(exc: HopgraphError) -> JSONResponse:
    """The reply for an engine error: its row of the table, and a body worded for it."""
    row = transport_of(exc)
    if row.status == 500:
        # An engine error with no HTTP meaning of its own is a bug on our side.
        logger.error("unmapped engine error", exc_info=exc)
    headers = {"Retry-After": "1"} if row.status in (429, 503) else None
    message = client_message(exc)
    problems: list[tuple[str, str]] | None = None
    extra: dict[str, Any] = {}
    if isinstance(exc, QuotaExceeded):
        extra = {"quota": exc.quota, "limit": exc.limit}
    elif isinstance(exc, GraphValidationError):
        problems = [(p.location, p.message) for p in exc.problems]
        message = f"the graph definition has {_plural(len(problems), 'problem')}"
    elif isinstance(exc, JsonRuleError):
        problems = [(_location(exc.location), exc.reason)]
    elif isinstance(exc, IdempotencyConflict):
        extra = {"run_id": exc.run_id, "differs": exc.differs}
        headers = {"Location": f"/runs/{exc.run_id}"}
    return error_reply(row.status, row.type, message, problems, headers, extra)


async def _engine_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HopgraphError)
    return engine_error_reply(exc)


async def _refused_body(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RefusedBody)
    return engine_error_reply(exc.error)


async def _request_invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    bad_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if bad_json is not None:
        return error_reply(400, "invalid_json", _json_message(bad_json))
    problems = [(_location(e.get("loc", ())), str(e.get("msg", "invalid"))) for e in errors]
    message = f"the request has {_plural(len(problems), 'problem')}"
    return error_reply(422, "request_invalid", message, problems)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled error", exc_info=exc)
    return error_reply(500, "internal", "internal error")


_HTTP_KINDS = {
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    kind = _HTTP_KINDS.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else "request refused"
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route for {request.method} {request.url.path}"
    return error_reply(exc.status_code, kind, message, headers=getattr(exc, "headers", None))


def install_error_handlers(app: FastAPI) -> None:
    """Register every mapping above on ``app``.

    Starlette picks the handler of the nearest class in the exception's MRO: every engine
    error reaches ``_engine_error``, which reads the table; a refused body (an HTTPException
    only to get through FastAPI's body parsing) is answered for the engine error it holds."""
    app.add_exception_handler(HopgraphError, _engine_error)
    app.add_exception_handler(RefusedBody, _refused_body)
    app.add_exception_handler(RequestValidationError, _request_invalid)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
