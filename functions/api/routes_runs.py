"""``/runs``: start, read, list and cancel runs, and read their execution logs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Response
from fastapi.types import DecoratedCallable

from engine.errors import NotFoundError
from engine.interrupt_spec import Breakpoints
from engine.ports import RunStatus, TaskRecord
from engine.timers import run_wakes_at
from functions.api.deps import (
    CurrentCaller,
    Service,
    start_owned_run,
    visible_header,
    visible_run,
)
from functions.api.errors import error_responses
from functions.api.examples import EXAMPLE_RUN_ID, RUN_REQUEST_EXAMPLES
from functions.api.json_body import JsonRulesRoute
from functions.api.models import (
    RunAccepted,
    RunPage,
    RunResource,
    RunStartRequest,
    RunSummary,
    StepDetail,
    StepPage,
)
from functions.api.routes_graphs import Cursor, Limit
from functions.api.step_pages import (
    SeqWindow,
    StepSeq,
    TaskWindow,
    bounded_steps,
    failed_attempts,
    find_value,
    seq_window,
    task_page,
    task_window,
)

router = APIRouter(prefix="/runs", tags=["runs"], route_class=JsonRulesRoute)

RunId = Annotated[
    str, Path(min_length=1, max_length=128, examples=[EXAMPLE_RUN_ID], description="Run id")
]


def run_command(
    router: APIRouter, action: str, summary: str, *statuses: int
) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """Declares ``POST /runs/{run_id}/<action>``: a command on one run, answered with the
    run as the command left it. 404 for a run the caller cannot see, 409 for one whose
    status does not take the command, 422 for a request that does not validate, and
    ``statuses``."""
    return router.post(
        f"/{{run_id}}/{action}",
        response_model=RunResource,
        responses=error_responses(*sorted({404, 409, 422, *statuses})),
        summary=summary,
    )


_EXISTING_RUN = (
    "The run an earlier start with this `idempotency_key` created; nothing new was started."
)


@router.post(
    "",
    status_code=202,
    response_model=RunAccepted,
    responses={
        200: {
            "model": RunAccepted,
            "description": _EXISTING_RUN,
        },
        202: {"description": "A new run; its first step is queued. `Location` names it."},
        **error_responses(400, 404, 409, 413, 422),
    },
    summary="Start a run",
)
def start_run(
    request: Annotated[RunStartRequest, Body(openapi_examples=RUN_REQUEST_EXAMPLES)],
    response: Response,
    service: Service,
    caller: CurrentCaller,
) -> RunAccepted:
    """Create a run and queue its first step; the run proceeds asynchronously.

    `202 Accepted` for a new run, `200 OK` when `idempotency_key` names a run an earlier
    request started (the same run is returned, nothing is started twice). Both carry a
    `Location` header with the run's URL. A 404 means the graph does not exist; 413, that
    `input` is larger than the state limit; 409 `idempotency_conflict`, that the key already
    started a run (`run_id`, also in `Location`) with a different input or `max_steps`
    (`differs`)."""
    run, created = start_owned_run(
        service,
        caller,
        request.graph_id,
        request.input,
        idempotency_key=request.idempotency_key,
        max_steps=request.max_steps,
        breakpoints=Breakpoints(
            frozenset(request.interrupt_before), frozenset(request.interrupt_after)
        ),
    )
    response.status_code = 202 if created else 200
    response.headers["Location"] = f"/runs/{run.run_id}"
    return RunAccepted.from_record(run, created)


@router.get("", response_model=RunPage, responses=error_responses(422), summary="List runs")
def list_runs(
    service: Service,
    caller: CurrentCaller,
    graph_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    status: Annotated[RunStatus | None, Query()] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> RunPage:
    """The caller's runs (an admin's: everyone's), newest first, optionally of one graph
    and/or in one status."""
    page = service.store.list_runs(
        graph_id=graph_id, status=status, limit=limit, cursor=cursor, owner=caller.owner_filter
    )
    return RunPage(items=[RunSummary.from_record(r) for r in page.items], next_cursor=page.cursor)


@router.get(
    "/{run_id}",
    response_model=RunResource,
    responses=error_responses(404, 422),
    summary="Read a run",
)
def get_run(run_id: RunId, service: Service, caller: CurrentCaller) -> RunResource:
    """Status, current state, the node that runs next, the step count and any error; for a
    run whose next node waits for a time, when it goes on (`wakes_at`); for a paused run,
    the questions it waits for (`pending`)."""
    run = visible_run(service, caller, run_id)
    if run.status == "paused":
        return RunResource.from_record(run, pending=service.pending_questions(run))
    if run.status != "running":
        return RunResource.from_record(run)
    graph = service.graph(run.graph_id)
    return RunResource.from_record(run, run_wakes_at(service.store, graph, run))


@router.get(
    "/{run_id}/steps",
    response_model=StepPage,
    responses=error_responses(404, 422),
    summary="Read a run's execution log",
)
def list_steps(
    run_id: RunId,
    service: Service,
    caller: CurrentCaller,
    window: Annotated[SeqWindow, seq_window(100)],
) -> StepPage:
    """Committed steps in order; pass `next_after` back as `after` for the next page. A page
    holds `limit` steps at most, and fewer when they would pass 1 MB of JSON (the Lambda
    response limit is 6 MB): keep reading while `next_after` is not null."""
    run = visible_run(service, caller, run_id)
    # The store's cursor is opaque; the API pages by seq, which callers can reason about.
    steps = bounded_steps(service, run_id, window.after, window.limit)
    page = failed_attempts(service, run, steps)
    return StepPage(items=page.entries, next_after=page.next_after, attempts=page.attempts)


@router.get(
    "/{run_id}/steps/{seq}",
    response_model=StepDetail,
    responses=error_responses(404, 422),
    summary="Read one step with its state and its tasks' updates",
)
def get_step(
    run_id: RunId,
    seq: StepSeq,
    service: Service,
    caller: CurrentCaller,
    tasks_window: Annotated[TaskWindow, task_window("task_", "task_next")],
) -> StepDetail:
    """The log entry of step `seq`, the state after it, and, for a superstep of several
    tasks, a page of its tasks with the updates each returned before the merge (pass
    `task_next` back as `task_after` for the next page; a page stops before 1 MB of JSON).
    The state before it is step `seq - 1`'s (the run's `input` for step 0). 404 if the
    step is not committed (yet)."""
    visible_header(service, caller, run_id)
    step = service.store.get_step(run_id, seq)
    if step is None:
        raise NotFoundError("step", str(seq))
    tasks: tuple[list[TaskRecord], str | None] = ([], None)
    if step.tasks or step.tasks_total:
        tasks = task_page(service.store, run_id, seq, tasks_window.after, tasks_window.limit)
    return StepDetail.from_records(step, *tasks)


@router.get(
    "/{run_id}/values/{digest}",
    responses=error_responses(404, 422),
    summary="Read a large value of a run",
)
def get_value(
    run_id: RunId,
    digest: Annotated[
        str, Path(pattern=r"^sha256:[0-9a-f]{64}$", description="The value's `$blob` digest")
    ],
    service: Service,
    caller: CurrentCaller,
) -> Any:
    """A value that replies show as `{"$blob": digest, "bytes": n, "href": ...}` because it
    is larger than 64 KB: its JSON, whole. 404 if no state, input or step update of the run
    holds it (or it is past the run's retention)."""
    run = visible_run(service, caller, run_id)
    value = find_value(service, run, digest)
    if value is None:
        raise NotFoundError("value", digest)
    return value


@run_command(router, "cancel", "Cancel a run")
def cancel_run(run_id: RunId, service: Service, caller: CurrentCaller) -> RunResource:
    """Stop a running or paused run before its next step; 409 if it is already final."""
    visible_header(service, caller, run_id)
    return RunResource.from_record(service.cancel_run(run_id))
