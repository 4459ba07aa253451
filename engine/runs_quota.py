"""The ``runs_in_flight`` quota: how many runs one owner may have running at once, child
runs (subgraphs) included.

It is checked where a run would start:

- by the API and the starter (:mod:`functions.quotas`), before a run is created: the request
  is refused with :class:`~engine.errors.QuotaExceeded` (HTTP 429 ``quota_exceeded``; a queued
  request is retried later);
- by a subgraph node's hop (:meth:`engine.subgraphs.Subgraphs.enter`), before its child run
  is created: a child is a run like any other, under its parent's owner, and counts against
  the owner's quota (the parent, still running, counts too: a run that nests subgraphs
  ``d`` deep holds ``d`` of the owner's runs while its deepest child runs). A child the quota
  refuses is never created: the parent's task fails saying so, as a child that could not
  start does.

The count reads the owner's running runs, one page of at most the quota's size, without a
lock: runs started at the same moment may pass it together (it errs on the side of starting
the run). 0 turns it off (the in-process runner's default). On AWS it is the template
parameter ``OwnerRunsInFlight`` (``HOPGRAPH_QUOTA_RUNS_IN_FLIGHT``).
"""

from __future__ import annotations

from engine.errors import QuotaExceeded
from engine.ports import RunStore

QUOTA = "runs_in_flight"
SETTING = "OwnerRunsInFlight"


def check_runs_in_flight(store: RunStore, owner: str | None, limit: int) -> None:
    """Raise :class:`QuotaExceeded` if ``owner`` already has ``limit`` runs running (0: no
    limit; a run without an owner is not counted)."""
    if limit <= 0 or owner is None:
        return
    running = store.list_runs(status="running", limit=limit, owner=owner)
    if len(running.items) >= limit:
        raise QuotaExceeded(QUOTA, limit, SETTING)
