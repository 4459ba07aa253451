"""Per-owner quotas, checked by the API and the starter before they start work for an owner.

- ``runs_in_flight``: HOPGRAPH_QUOTA_RUNS_IN_FLIGHT (template parameter ``OwnerRunsInFlight``),
  checked when the API or the starter starts a run, and by the engine when a subgraph node
  starts a child run (:mod:`engine.runs_quota`);
- ``requests_per_second``: HOPGRAPH_QUOTA_REQUESTS_PER_SECOND (``OwnerRequestsPerSecond``),
  checked by the API on every POST;
- ``map_width`` (per run, not per owner): HOPGRAPH_QUOTA_MAP_WIDTH (``MaxMapWidth``), the
  tasks one superstep may have, checked by the engine itself (:mod:`engine.map_quota`).

0 turns a quota off. Reaching one raises :class:`~engine.errors.QuotaExceeded`: a 429 naming
the quota over HTTP (with ``Retry-After``), a retried message for the starter (the one
error table, :mod:`engine.errors`).

- Runs in flight are the owner's runs with status ``running``, read from the owner's index
  partition newest first, one page of at most the quota's size (a page stops after
  ``MAX_QUERIES_PER_PAGE`` queries, so an owner with a long history of finished runs may be
  under-counted: the quota errs on the side of starting the run).
- Requests per second are counted in the table, one item per owner and second
  (``PK=QUOTA#<owner>``, ``SK=RPS#<epoch second>``, expiring after a minute): one
  conditional write per POST, refused once the second's count reached the quota. GETs are
  bounded by the stage's throttle alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from engine import runs_quota
from engine.errors import QuotaExceeded
from engine.service import RunService
from functions.settings import Settings

COUNTER_TTL_SECONDS = 60


def check_runs_in_flight(service: RunService, owner: str | None, settings: Settings) -> None:
    """QuotaExceeded if ``owner`` already has the quota's number of runs running (child runs
    included: :mod:`engine.runs_quota`, which subgraph nodes check too)."""
    runs_quota.check_runs_in_flight(service.store, owner, settings.quota_runs_in_flight)


_now: Callable[[], float] = time.time
"""The clock the per-second counters read (tests pin it)."""


def count_request(dynamodb: Any, owner: str, settings: Settings) -> None:
    """Count one request of ``owner`` in this second; QuotaExceeded if the second is full."""
    limit = settings.quota_requests_per_second
    if limit <= 0:
        return
    second = int(_now())
    try:
        dynamodb.update_item(
            TableName=settings.table,
            Key={"PK": {"S": f"QUOTA#{owner}"}, "SK": {"S": f"RPS#{second}"}},
            UpdateExpression="ADD #n :one SET expires_at = if_not_exists(expires_at, :ttl)",
            ConditionExpression="attribute_not_exists(#n) OR #n < :limit",
            ExpressionAttributeNames={"#n": "n"},
            ExpressionAttributeValues={
                ":one": {"N": "1"},
                ":limit": {"N": str(limit)},
                ":ttl": {"N": str(second + COUNTER_TTL_SECONDS)},
            },
        )
    except dynamodb.exceptions.ConditionalCheckFailedException:
        raise QuotaExceeded("requests_per_second", limit, "OwnerRequestsPerSecond") from None
