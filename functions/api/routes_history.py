"""``/runs/{id}/history``, ``fork``, ``redrive`` and ``state``: time travel over a run's
supersteps (:mod:`engine.history`)."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Body, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from engine import history
from engine.errors import ConflictError
from engine.events import iso
from functions import quotas
from functions.api.deps import CurrentCaller, Service, visible_header
from functions.api.errors import error_responses
from functions.api.json_body import JsonRulesRoute
from functions.api.models import (
    ParentRef,
    RunAccepted,
    RunResource,
    State,
    StepLimit,
    Timestamp,
)
from functions.api.routes_runs import RunId, run_command
from functions.api.step_pages import Budget, SeqWindow, seq_window

router = APIRouter(prefix="/runs", tags=["time travel"], route_class=JsonRulesRoute)

Key = Annotated[str, Field(min_length=1, max_length=256)]
NodeName = Annotated[str, Field(min_length=1, max_length=128)]


class HistoryItem(BaseModel):
    """The state after one superstep, as a checkpoint: what ran and where it went next."""

    seq: int
    node: str = Field(description="The node(s) that ran; empty for a command's entry.")
    status: str
    run_status: str
    next: str | list[str] | None
    started_at: Timestamp
    error: str | None
    source: str | None = Field(description="fork, redrive or edit: an entry a command wrote.")
    state: State | None = Field(
        default=None, description="The state after the superstep (only with `states=true`)."
    )


class HistoryResponse(BaseModel):
    run_id: str
    parent: ParentRef | None = Field(
        description="A fork's: the run and superstep its history continues from."
    )
    items: list[HistoryItem]
    next_after: int | None = Field(description="Pass as `after` for the next page.")


class ForkRequest(BaseModel):
    """Fork a run from the state after one of its supersteps."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"from_seq": 1, "update": {"topic": "chickens"}}]},
    )

    from_seq: Annotated[StrictInt, Field(ge=0, le=1_000_000)]
    update: State = Field(default_factory=dict, description="Applied through the graph's reducers.")
    as_node: NodeName | None = Field(
        default=None,
        description="Apply the update as if this node wrote it, and go where it routes "
        "(LangGraph's `as_node`). Default: the superstep's node when it ran one.",
    )
    idempotency_key: Key | None = None
    max_steps: StepLimit | None = Field(default=None, description="Default: the parent's.")


class RedriveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_steps: StepLimit | None = Field(
        default=None, description="A higher step limit (needed when the limit stopped it)."
    )


class StateEditRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    update: State
    as_node: NodeName | None = None


@router.get(
    "/{run_id}/history",
    response_model=HistoryResponse,
    responses=error_responses(404, 422),
    summary="Read a run's history, superstep by superstep",
)
def get_history(
    run_id: RunId,
    service: Service,
    caller: CurrentCaller,
    window: Annotated[SeqWindow, seq_window(50)],
    states: Annotated[bool, Query(description="Include the state after each")] = False,
) -> HistoryResponse:
    """Each superstep's checkpoint: `seq`, what ran, its status and where it went next.
    States are left out unless `states=true` (or read one with `GET /runs/{id}/steps/{seq}`);
    a page with states stops before 1 MB of JSON. Pass `next_after` back as `after`."""
    run = visible_header(service, caller, run_id)
    items: list[HistoryItem] = []
    next_after, fits = None, Budget()
    page = history.history(service.store, run_id, window.after, window.limit, states=states)
    for entry in page.entries:
        doc = {**entry.to_dict(), "started_at": iso(entry.started_at)}
        if not fits.admits(len(json.dumps(doc, default=str))):
            next_after = items[-1].seq
            break
        items.append(HistoryItem.model_validate(doc))
    else:
        next_after = page.next_after
    parent = None
    if run.parent_run_id is not None and run.parent_seq is not None:
        parent = ParentRef(run_id=run.parent_run_id, seq=run.parent_seq)
    return HistoryResponse(run_id=run_id, parent=parent, items=items, next_after=next_after)


@router.post(
    "/{run_id}/fork",
    status_code=202,
    response_model=RunAccepted,
    responses={
        200: {"model": RunAccepted, "description": "The fork an earlier request made."},
        **error_responses(400, 404, 409, 413, 422),
    },
    summary="Fork a run from one of its supersteps",
)
def fork_run(
    run_id: RunId,
    request: ForkRequest,
    response: Response,
    service: Service,
    caller: CurrentCaller,
) -> RunAccepted:
    """A new run, owned by the caller, that starts from the state after superstep
    `from_seq` of this one with `update` applied through the reducers, and goes on where
    that superstep went next (or where `as_node` routes). Its `parent` names this run.
    202 for a new run, 200 when `idempotency_key` names an earlier fork; 409 if the
    superstep failed (fork from the one before it, or redrive)."""
    parent = visible_header(service, caller, run_id)
    from functions.settings import get_settings

    quotas.check_runs_in_flight(service, caller.sub, get_settings())
    asked = history.ForkRequest(
        request.from_seq, request.update, request.as_node, request.idempotency_key,
        request.max_steps,
    )  # fmt: skip
    run, created = history.fork_run(service, parent, asked, caller.sub)
    if not caller.sees(run.owner):
        raise ConflictError("this idempotency_key is already used for this run; choose another")
    response.status_code = 202 if created else 200
    response.headers["Location"] = f"/runs/{run.run_id}"
    return RunAccepted.from_record(run, created)


@run_command(router, "redrive", "Redrive a failed run from its failed superstep")
def redrive_run(
    run_id: RunId,
    service: Service,
    caller: CurrentCaller,
    request: Annotated[RedriveRequest | None, Body()] = None,
) -> RunResource:
    """The failed superstep runs again, as a new attempt; the failure stays in the log.
    409 unless the run is failed (two redrives at once: one wins, the other gets 409). A
    run its step limit stopped needs a higher `max_steps`."""
    visible_header(service, caller, run_id)
    limit = request.max_steps if request is not None else None
    return RunResource.from_record(history.redrive_run(service, run_id, limit))


@run_command(router, "state", "Edit a paused run's state", 413)
def edit_state(
    run_id: RunId, request: StateEditRequest, service: Service, caller: CurrentCaller
) -> RunResource:
    """Apply `update` through the reducers (as `as_node`'s write when named); the edit is
    an entry of its own in the log. 409 unless the run is paused."""
    visible_header(service, caller, run_id)
    edited = history.edit_state(service, run_id, request.update, request.as_node)
    return RunResource.from_record(edited)
