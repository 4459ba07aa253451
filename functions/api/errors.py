"""The one place where errors become HTTP responses.

Every error reply, whatever raised it, has one shape (:class:`ErrorResponse`)::

    {"error": {"type": "graph_invalid", "message": "...",
               "problems": [{"location": "nodes.review.tool", "message": "unknown tool ..."}]}}

| raised                                  | status | ``type``            |
|-----------------------------------------|--------|---------------------|
| GraphValidationError                    | 422    | graph_invalid       |
| InvalidInputError                       | 422    | invalid_input       |
| RequestValidationError (bad fields)     | 422    | request_invalid     |
| RequestValidationError (bad JSON)       | 400    | invalid_json        |
| NotFoundError (graph, run, tool)        | 404    | not_found           |
| ConflictError (cancel a final run...)   | 409    | conflict            |
| StateTooLargeError, body over the limit | 413    | payload_too_large   |
| RetryLater, TransientStoreError         | 503    | unavailable         |
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
    ConflictError,
    GraphValidationError,
    HopgraphError,
    InvalidInputError,
    NotFoundError,
    RetryLater,
    StateTooLargeError,
    TransientStoreError,
)

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
    409: "The request conflicts with the resource's current state.",
    413: "The body, or the run state it carries, is larger than the limit.",
    422: "The request is invalid; `problems` lists every problem with its location.",
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
    """Put :class:`ErrorResponse` (and the models it uses) into ``openapi``'s components."""
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schema.pop("$defs", {}))
    schemas["ErrorResponse"] = schema
    return openapi


def error_reply(
    status: int,
    kind: str,
    message: str,
    problems: Iterable[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A JSON error reply in the one shape of :class:`ErrorResponse`."""
    body: dict[str, Any] = {"type": kind, "message": message}
    if problems is not None:
        body["problems"] = [{"location": loc, "message": msg} for loc, msg in problems]
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
async def _graph_invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GraphValidationError)
    problems = [(p.location, p.message) for p in exc.problems]
    message = f"the graph definition has {_plural(len(problems), 'problem')}"
    return error_reply(422, "graph_invalid", message, problems)


async def _request_invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    bad_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if bad_json is not None:
        return error_reply(400, "invalid_json", _json_message(bad_json))
    problems = [(_location(e.get("loc", ())), str(e.get("msg", "invalid"))) for e in errors]
    message = f"the request has {_plural(len(problems), 'problem')}"
    return error_reply(422, "request_invalid", message, problems)


async def _invalid_input(request: Request, exc: Exception) -> JSONResponse:
    return error_reply(422, "invalid_input", str(exc))


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    return error_reply(404, "not_found", str(exc))


async def _conflict(request: Request, exc: Exception) -> JSONResponse:
    return error_reply(409, "conflict", str(exc))


async def _too_large(request: Request, exc: Exception) -> JSONResponse:
    return error_reply(413, "payload_too_large", str(exc))


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    return error_reply(503, "unavailable", str(exc), headers={"Retry-After": "1"})


async def _engine_error(request: Request, exc: Exception) -> JSONResponse:
    # An engine error with no HTTP meaning of its own is a bug on our side, not the client's.
    logger.error("unmapped engine error", exc_info=exc)
    return error_reply(500, "internal", "internal error")


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

    Starlette picks the handler of the nearest class in the exception's MRO, so the
    specific engine errors win over the ``HopgraphError`` fallback."""
    app.add_exception_handler(GraphValidationError, _graph_invalid)
    app.add_exception_handler(RequestValidationError, _request_invalid)
    app.add_exception_handler(InvalidInputError, _invalid_input)
    app.add_exception_handler(NotFoundError, _not_found)
    app.add_exception_handler(ConflictError, _conflict)
    app.add_exception_handler(StateTooLargeError, _too_large)
    app.add_exception_handler(RetryLater, _unavailable)
    app.add_exception_handler(TransientStoreError, _unavailable)
    app.add_exception_handler(HopgraphError, _engine_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
