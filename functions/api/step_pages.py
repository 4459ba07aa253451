"""Pages of a run's execution log bounded by bytes as well as by count.

A step's entry carries its updates, so 500 entries can make tens of MB of JSON, past
Lambda's 6 MB limit for a synchronous response (API Gateway then answers 500 with nothing
of the page). Every listing of steps goes through :func:`bounded_steps`: it stops at a whole
entry before ``budget`` bytes of JSON and says where the next page starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from engine.blobs import BLOB_ABOVE, digest_of, encoded
from engine.ports import RunRecord, StepRecord
from engine.service import RunService
from functions.api.models import AttemptEntry, LogEntry

PAGE_BUDGET_BYTES = 1_000_000
"""The entries of one page stop before this many bytes of JSON (one entry is always given,
whatever its size: a step's updates are bounded by the state limit, 350 KB by default)."""
READ_CHUNK = 100
"""Steps read from the store per query while a page fills."""


@dataclass(frozen=True, slots=True)
class StepsPage:
    entries: list[LogEntry]
    next_after: int | None
    """The ``seq`` to pass as ``after`` for the next page; ``None``: the log ends here."""
    cut_by_bytes: bool = False
    retried: list[int] = field(default_factory=list)
    """The supersteps of ``entries`` that may have failed attempts (:func:`_retried`)."""
    attempts: list[AttemptEntry] = field(default_factory=list)
    """The failed attempts of retried tasks (:func:`failed_attempts`)."""


def _retried(step: StepRecord) -> bool:
    """Whether a superstep may have failed attempts: its task (or one of its tasks)
    committed at an attempt after the first."""
    return step.attempt > 1 or any(t.get("attempt", 1) > 1 for t in step.tasks)


def failed_attempts(service: RunService, run: RunRecord, page: StepsPage) -> StepsPage:
    """``page`` with the failed attempts of its retried supersteps (one query each, only for
    those) and, when it ends the log of a running run whose graph retries, of the superstep
    still open."""
    seqs = list(page.retried)
    if page.next_after is None and run.status == "running":
        graph = service.graph(run.graph_id)
        if any(node.failure.retry is not None for node in graph.nodes.values()):
            seqs.append(run.steps)
    found = [a for seq in seqs for a in service.store.list_attempts(run.run_id, seq)]
    return replace(page, attempts=[AttemptEntry.from_record(a) for a in found])


def bounded_steps(
    service: RunService, run_id: str, after: int, limit: int, budget: int = PAGE_BUDGET_BYTES
) -> StepsPage:
    """Up to ``limit`` entries after ``after``, as many whole ones as fit in ``budget``."""
    entries: list[LogEntry] = []
    retried: list[int] = []
    used = 0
    while len(entries) < limit:
        page = service.store.list_steps(
            run_id, after=after, limit=min(READ_CHUNK, limit - len(entries))
        )
        for step in page.items:
            entry = LogEntry.from_record(step)
            size = len(entry.model_dump_json()) + 1  # and its comma
            if entries and used + size > budget:
                return StepsPage(entries, entries[-1].seq, cut_by_bytes=True, retried=retried)
            entries.append(entry)
            retried.extend([step.seq] if _retried(step) else [])
            used += size
        if page.cursor is None or not page.items:
            return StepsPage(entries, None, retried=retried)
        after = page.items[-1].seq
    return StepsPage(entries, entries[-1].seq, retried=retried)


def find_value(service: RunService, run: RunRecord, digest: str) -> Any:
    """The value of ``run`` whose digest is ``digest`` (engine/blobs.py): in its state, its
    input, or the updates of a step, latest first as far as the state goes, then the log in
    order; ``None`` if none holds it."""
    for values in (run.state, run.input):
        found = _with_digest(values, digest)
        if found is not None:
            return found[0]
    after = -1
    while True:
        page = service.store.list_steps(run.run_id, after=after, limit=READ_CHUNK)
        for step in page.items:
            found = _with_digest(step.updates, digest)
            if found is not None:
                return found[0]
        if page.cursor is None or not page.items:
            return None
        after = page.items[-1].seq


def _with_digest(values: dict[str, Any], digest: str) -> tuple[Any] | None:
    for value in values.values():
        if isinstance(value, str | list | dict):
            data = encoded(value)
            if len(data) > BLOB_ABOVE and digest_of(data) == digest:
                return (value,)
    return None
