"""``/runs/counts``: how many runs are in each status, for a runs list's filter."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from functions.api.deps import CurrentCaller, Service
from functions.api.errors import error_responses
from functions.api.json_body import JsonRulesRoute

router = APIRouter(prefix="/runs", tags=["runs"], route_class=JsonRulesRoute)

COUNT_UP_TO = 10_000
"""Counting stops after this many runs unless a request asks for fewer."""


class RunCounts(BaseModel):
    """Runs per status, for the filter asked (and the caller's runs unless an admin asks)."""

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "counts": {
                        "running": 3,
                        "paused": 1,
                        "completed": 40,
                        "failed": 2,
                        "cancelled": 1,
                    },
                    "exact": True,
                }
            ]
        }
    }

    counts: dict[str, int] = Field(description="Every status, zeros included.")
    exact: bool = Field(
        description="False: counting stopped at `up_to` runs, and each count is at least "
        "what it says."
    )


@router.get(
    "/counts",
    response_model=RunCounts,
    responses=error_responses(422),
    summary="Count runs by status",
)
def count_runs(
    service: Service,
    caller: CurrentCaller,
    graph_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    up_to: Annotated[
        int, Query(ge=1, le=COUNT_UP_TO, description="Count this many at most")
    ] = COUNT_UP_TO,
) -> RunCounts:
    """How many of the caller's runs (an admin's: everyone's), of one graph if asked, are in
    each status: what `GET /runs` lists with each `status` filter. Counted from the listing
    indexes (the run records are not read), up to `up_to` runs."""
    counts, exact = service.store.count_runs(
        graph_id=graph_id, owner=caller.owner_filter, up_to=up_to
    )
    return RunCounts(counts=counts, exact=exact)
