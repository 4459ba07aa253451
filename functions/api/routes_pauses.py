"""``POST /runs/{id}/resume``: answer a paused run's question (engine/pauses.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field

from functions.api.deps import CurrentCaller, Service, visible_header
from functions.api.json_body import JsonRulesRoute
from functions.api.models import RunResource
from functions.api.routes_runs import RunId, run_command

router = APIRouter(prefix="/runs", tags=["runs"], route_class=JsonRulesRoute)


class ResumeRequest(BaseModel):
    """The answer to a paused run's question."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"value": True}, {"value": "ship it", "task": "review"}]},
    )

    value: Any = Field(
        default=None,
        description="The answer, checked against the question's `schema` and written under "
        "its `key`. A breakpoint takes none.",
    )
    task: str | None = Field(
        default=None,
        min_length=1,
        max_length=512,
        description="Which question, when several wait (a `pending[].task` of the run).",
    )
    question: str | None = Field(
        default=None,
        min_length=1,
        max_length=600,
        description="The question's id (`pending[].id`): names one question for ever, so "
        "that a retried request is answered the same even after the run asked again.",
    )


@run_command(router, "resume", "Answer a paused run")
def resume_run(
    run_id: RunId,
    service: Service,
    caller: CurrentCaller,
    request: Annotated[ResumeRequest | None, Body()] = None,
) -> RunResource:
    """Write `value` under the waiting question's key (through its reducer) and go on from
    that task's node; its tool does not run again. Exactly once: the same answer sent again
    is answered the same. 409 if the run waits for no answer (it is not paused), or the
    question was answered with another value; 422 if `value` does not match the question's
    schema, or several questions wait and `task` does not say which."""
    visible_header(service, caller, run_id)
    answer = request if request is not None else ResumeRequest()
    run = service.resume_run(run_id, answer.value, answer.task, answer.question)
    pending = service.pending_questions(run) if run.status == "paused" else None
    return RunResource.from_record(run, pending=pending)
