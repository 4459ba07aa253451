"""``/graph/...``: the routes clients of earlier engines of this kind call.

They answer ``200`` with the field names those clients read (``current_state``,
``execution_log``); runs still proceed asynchronously, so a client polls
``GET /graph/state/{run_id}`` until ``status`` is final.

The execution log in these answers is bounded (:data:`LOG_BUDGET_BYTES`): a long run with
large updates would otherwise make one response of tens of MB, past Lambda's 6 MB limit for
a synchronous response. A log that does not fit stops at a whole entry, with
``"truncated": true`` and ``next``, the paginated route that continues it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field

from engine.errors import InvalidInputError
from engine.ports import RunStatus
from engine.service import RunService
from engine.validation import MAX_STEPS_CEILING
from functions.api.deps import (
    CurrentCaller,
    Service,
    start_owned_run,
    visible_header,
    visible_run,
)
from functions.api.errors import error_responses
from functions.api.examples import (
    DIALECT1,
    EXAMPLE_GRAPH_ID,
    EXAMPLE_LOG_ENTRY,
    EXAMPLE_RUN_ID,
    EXAMPLE_STATE,
    EXAMPLE_TIME,
    SAMPLE_CODE,
)
from functions.api.json_body import JsonRulesRoute
from functions.api.models import Id, LogEntry, RunSummary, State, StepLimit
from functions.api.routes_graphs import GraphDocument
from functions.api.routes_runs import RunId
from functions.api.step_pages import bounded_steps

router = APIRouter(prefix="/graph", tags=["compatibility"], route_class=JsonRulesRoute)

LOG_BUDGET_BYTES = 1_000_000
"""The execution log of one answer stops before this many bytes of JSON: with the state
beside it (at most the state limit, 350 KB by default) the answer stays far below Lambda's
6 MB, and quick to send."""
_TRUNCATED = Field(
    default=False, description="True: `execution_log` stops early; `next` continues it."
)
_NEXT = Field(
    default=None,
    description="When truncated: the paginated route with the rest of the log "
    "(`/runs/{run_id}/steps?after=<seq>`); null otherwise.",
)


class CompatGraphCreated(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"graph_id": EXAMPLE_GRAPH_ID, "name": "code_review", "graph": DIALECT1}]
        }
    )

    graph_id: str
    name: str
    graph: dict[str, Any] = Field(description="The canonical definition.")


class CompatRunRequest(BaseModel):
    """``initial_state`` (or ``input``) is the run's initial state."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"graph_id": EXAMPLE_GRAPH_ID, "initial_state": {"code": SAMPLE_CODE}}]
        }
    )

    graph_id: Id
    initial_state: State | None = None
    input: State | None = Field(default=None, description="Accepted for `initial_state`.")
    idempotency_key: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    max_steps: StepLimit | None = None


class CompatRunStarted(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"run_id": EXAMPLE_RUN_ID, "graph_id": EXAMPLE_GRAPH_ID, "status": "running"}
            ]
        }
    )

    run_id: str
    graph_id: str
    status: RunStatus


class CompatRunLog(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "run_id": EXAMPLE_RUN_ID,
                    "status": "completed",
                    "execution_log": [EXAMPLE_LOG_ENTRY],
                }
            ]
        }
    )

    run_id: str
    status: RunStatus
    execution_log: list[LogEntry] = Field(
        description="The committed steps in order, all of them unless `truncated`."
    )
    truncated: bool = _TRUNCATED
    next: str | None = _NEXT


class CompatRunState(RunSummary):
    """A run under the names earlier clients read, with its execution log."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "run_id": EXAMPLE_RUN_ID,
                    "graph_id": EXAMPLE_GRAPH_ID,
                    "status": "completed",
                    "current_state": EXAMPLE_STATE,
                    "current_node": None,
                    "execution_log": [EXAMPLE_LOG_ENTRY],
                    "error": None,
                    "steps": 5,
                    "max_steps": 50,
                    "created_at": EXAMPLE_TIME,
                    "updated_at": EXAMPLE_TIME,
                }
            ]
        }
    )

    current_state: State = Field(description="The state after the latest committed step.")
    current_node: str | None = Field(description="The node the next step runs; null once final.")
    steps: int
    max_steps: int
    execution_log: list[LogEntry] = Field(
        description="The committed steps in order, all of them unless `truncated`."
    )
    truncated: bool = _TRUNCATED
    next: str | None = _NEXT


@dataclass(frozen=True, slots=True)
class BoundedLog:
    entries: list[LogEntry]
    truncated: bool = False
    next: str | None = None


def bounded_log(service: RunService, run_id: str, budget: int = LOG_BUDGET_BYTES) -> BoundedLog:
    """The run's log from its first step, as many whole entries as fit in ``budget`` bytes of
    JSON; pages are read only until the budget is spent (:func:`bounded_steps`)."""
    page = bounded_steps(service, run_id, -1, MAX_STEPS_CEILING + 1, budget)
    if page.next_after is None:
        return BoundedLog(page.entries)
    # `next` continues where this log stops, in pages bounded the same way
    return BoundedLog(page.entries, True, f"/runs/{run_id}/steps?after={page.next_after}")


@router.post(
    "/create",
    response_model=CompatGraphCreated,
    responses=error_responses(400, 413, 422),
    summary="Create a graph (compatibility)",
)
def create_graph(doc: GraphDocument, service: Service, caller: CurrentCaller) -> CompatGraphCreated:
    """As `POST /graphs`, answering 200 with the graph id."""
    record, _graph = service.create_graph(doc, owner=caller.sub)
    return CompatGraphCreated(graph_id=record.graph_id, name=record.name, graph=record.definition)


@router.post(
    "/run",
    response_model=CompatRunStarted,
    responses=error_responses(400, 404, 409, 413, 422),
    summary="Start a run (compatibility)",
)
def run_graph(
    request: Annotated[CompatRunRequest, Body()], service: Service, caller: CurrentCaller
) -> CompatRunStarted:
    """As `POST /runs`, answering 200; poll `GET /graph/state/{run_id}` for the result."""
    if request.initial_state is not None and request.input is not None:
        raise InvalidInputError("give the initial state as `initial_state` or `input`, not both")
    state = request.initial_state if request.initial_state is not None else request.input
    run, _created = start_owned_run(
        service,
        caller,
        request.graph_id,
        state,
        idempotency_key=request.idempotency_key,
        max_steps=request.max_steps,
    )
    return CompatRunStarted(run_id=run.run_id, graph_id=run.graph_id, status=run.status)


@router.get(
    "/state/{run_id}",
    response_model=CompatRunState,
    responses=error_responses(404, 422),
    summary="A run's state and execution log (compatibility)",
)
def run_state(run_id: RunId, service: Service, caller: CurrentCaller) -> CompatRunState:
    run = visible_run(service, caller, run_id)
    log = bounded_log(service, run_id)
    return CompatRunState(
        **RunSummary.from_record(run).model_dump(),
        current_state=run.state,
        current_node=run.node,
        steps=run.steps,
        max_steps=run.max_steps,
        execution_log=log.entries,
        truncated=log.truncated,
        next=log.next,
    )


@router.get(
    "/logs/{run_id}",
    response_model=CompatRunLog,
    responses=error_responses(404, 422),
    summary="A run's execution log (compatibility)",
)
def run_logs(run_id: RunId, service: Service, caller: CurrentCaller) -> CompatRunLog:
    run = visible_header(service, caller, run_id)
    log = bounded_log(service, run_id)
    return CompatRunLog(
        run_id=run_id,
        status=run.status,
        execution_log=log.entries,
        truncated=log.truncated,
        next=log.next,
    )
