"""What routes receive through FastAPI's dependency injection: the run service, and the
caller with what it may see."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException

from engine.errors import ConflictError, GraphNotFound, RunNotFound
from engine.interrupt_spec import NO_BREAKPOINTS, Breakpoints
from engine.ports import GraphRecord, RunRecord
from engine.service import RunService
from functions import quotas, runtime
from functions.auth.caller import (
    AdminRule,
    Caller,
    Unauthenticated,
    caller_from_claims,
    render_claim,
)


def current_service() -> RunService:
    """The process's run service, built on first use (not at import: cold start)."""
    return runtime.service()


Service = Annotated[RunService, Depends(current_service)]

# Declares the bearer token in the OpenAPI document; the token itself is checked before the
# app (API Gateway's JWT authorizer, or the local stack's stand-in), never here.
bearer = HTTPBearer(auto_error=False, bearerFormat="JWT", description="A JWT of the issuer")


def jwt_claims(event: Any) -> dict[str, Any] | None:
    """The claims API Gateway's JWT authorizer put into an HTTP API (payload 2.0) event."""
    if not isinstance(event, dict):
        return None
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    claims = (authorizer.get("jwt") or {}).get("claims")
    return claims if isinstance(claims, dict) else None


def token_claims(event: Any, rule: AdminRule) -> dict[str, Any] | None:
    """The verified caller's claims with their real JSON types.

    API Gateway's JWT authorizer verified the bearer token of this very request, then
    rendered its claims into the event as strings (a list as ``[a b]``, which cannot be read
    back: a group named ``hopgraph-admin wannabes`` and two groups look alike). So the claims
    are read from the token's payload, once its subject and the admin claim agree with what
    the authorizer rendered; if they do not (or the token cannot be read), the caller is
    only the verified subject, never an admin."""
    verified = jwt_claims(event)
    if verified is None:
        return None
    identity_only = {"sub": verified.get("sub")}
    decoded = _bearer_payload(event.get("headers") if isinstance(event, dict) else None)
    if decoded is None:
        return identity_only
    for name in ("sub", rule.claim):
        present = name in decoded or name in verified
        if present and (name not in decoded or render_claim(decoded[name]) != verified.get(name)):
            return identity_only
    return decoded


def _bearer_payload(headers: Any) -> dict[str, Any] | None:
    """The payload of the request's bearer JWT, not verified here (see token_claims)."""
    if not isinstance(headers, dict):
        return None
    value = next((v for k, v in headers.items() if str(k).lower() == "authorization"), None)
    scheme, _, token = str(value or "").partition(" ")
    parts = token.strip().split(".")
    if scheme.lower() != "bearer" or len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    return payload if isinstance(payload, dict) else None


def _admin_rule() -> AdminRule:
    from functions.settings import get_settings

    settings = get_settings()
    return AdminRule(settings.admin_claim, settings.admin_value)


def current_caller(request: Request, _token: Annotated[Any, Depends(bearer)]) -> Caller:
    """Who calls, from the verified claims of the Lambda event (:func:`token_claims`; Mangum
    keeps the event as ``scope["aws.event"]``; the local stack puts the same there). No
    claims means the route was reached without the authorizer: refused, never served
    anonymously."""
    try:
        rule = _admin_rule()
        caller = caller_from_claims(token_claims(request.scope.get("aws.event"), rule), rule)
    except Unauthenticated:
        raise HTTPException(
            401, "sign in: this route needs a valid bearer token", {"WWW-Authenticate": "Bearer"}
        ) from None
    from functions.settings import get_settings

    settings = get_settings()
    # What starts or changes work counts against the owner's quota (0: off, no write)
    if request.method == "POST" and settings.quota_requests_per_second > 0:
        from functions.aws import clients

        quotas.count_request(clients.client("dynamodb"), caller.sub, settings)
    return caller


CurrentCaller = Annotated[Caller, Depends(current_caller)]


def visible_graph(service: RunService, caller: Caller, graph_id: str) -> GraphRecord:
    """The graph if the caller may see it; another owner's graph does not exist (404)."""
    graph = service.store.get_graph(graph_id)
    if not caller.sees(graph.owner):
        raise GraphNotFound(graph_id)
    return graph


def visible_run(service: RunService, caller: Caller, run_id: str) -> RunRecord:
    """The run if the caller may see it; another owner's run does not exist (404)."""
    run = service.store.get_run(run_id)
    if not caller.sees(run.owner):
        raise RunNotFound(run_id)
    return run


def visible_header(service: RunService, caller: Caller, run_id: str) -> RunRecord:
    """The run's header (:meth:`~engine.ports.RunStore.get_run_header`: no input, state or
    step) if the caller may see it, as :func:`visible_run` decides: for a route that needs
    whose the run is and where it stands, not what it holds. One small read, however large
    the run's state."""
    run = service.store.get_run_header(run_id)
    if not caller.sees(run.owner):
        raise RunNotFound(run_id)
    return run


def start_owned_run(
    service: RunService,
    caller: Caller,
    graph_id: str,
    input: Any,
    *,
    idempotency_key: str | None,
    max_steps: int | None,
    breakpoints: Breakpoints = NO_BREAKPOINTS,
) -> tuple[RunRecord, bool]:
    """Start a run of a graph the caller may see, owned by the caller (set here, never by
    the client). A key that already named someone else's run of the graph (an admin's run
    of the caller's graph) is a conflict that names nobody."""
    visible_graph(service, caller, graph_id)
    from functions.settings import get_settings

    quotas.check_runs_in_flight(service, caller.sub, get_settings())
    run, created = service.start_run(
        graph_id,
        input,
        idempotency_key=idempotency_key,
        max_steps=max_steps,
        owner=caller.sub,
        breakpoints=breakpoints,
    )
    if not caller.sees(run.owner):
        raise ConflictError("this idempotency_key is already used for this graph; choose another")
    return run, created
