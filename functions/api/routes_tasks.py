"""``/runs/{id}/steps/{seq}/tasks``: a superstep's tasks a page at a time, read from the
store a page at a time (a map of 10,000 items is never read whole to show 100 of them)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field

from functions.api.deps import CurrentCaller, Service, visible_header
from functions.api.errors import error_responses
from functions.api.json_body import JsonRulesRoute
from functions.api.models import TaskDetail
from functions.api.routes_runs import RunId
from functions.api.step_pages import StepSeq, TaskWindow, task_page, task_window

router = APIRouter(prefix="/runs", tags=["runs"], route_class=JsonRulesRoute)


class TaskPage(BaseModel):
    """A page of a superstep's tasks, by map item index (tasks that are no item first)."""

    items: list[TaskDetail]
    next_after: str | None = Field(description="Pass as `after` for the next page; null: no more.")


@router.get(
    "/{run_id}/steps/{seq}/tasks",
    response_model=TaskPage,
    responses=error_responses(404, 422),
    summary="Read a superstep's tasks, a page at a time",
)
def list_tasks(
    run_id: RunId,
    seq: StepSeq,
    service: Service,
    caller: CurrentCaller,
    window: Annotated[TaskWindow, task_window("", "next_after")],
) -> TaskPage:
    """The committed tasks of superstep `seq` with each one's own updates, including those
    of a superstep still open (a map whose items are still running); `GET
    /runs/{id}/steps/{seq}` gives the first page with the step. A page stops before 1 MB of
    JSON; pass `next_after` back as `after` while it is not null."""
    visible_header(service, caller, run_id)
    tasks, following = task_page(service.store, run_id, seq, window.after, window.limit)
    return TaskPage(items=[TaskDetail.from_record(t) for t in tasks], next_after=following)
