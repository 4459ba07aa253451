"""Pages of a run's execution log bounded by bytes as well as by count.

A step's entry carries its updates, so 500 entries can make tens of MB of JSON, past
Lambda's 6 MB limit for a synchronous response (API Gateway then answers 500 with nothing
of the page). Every listing of steps goes through :func:`bounded_steps`: it stops at a whole
entry before ``budget`` bytes of JSON and says where the next page starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.blobs import BLOB_ABOVE, digest_of, encoded
from engine.ports import RunRecord
from engine.service import RunService
from functions.api.models import LogEntry

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


def bounded_steps(
    service: RunService, run_id: str, after: int, limit: int, budget: int = PAGE_BUDGET_BYTES
) -> StepsPage:
    """Up to ``limit`` entries after ``after``, as many whole ones as fit in ``budget``."""
    entries: list[LogEntry] = []
    used = 0
    while len(entries) < limit:
        page = service.store.list_steps(
            run_id, after=after, limit=min(READ_CHUNK, limit - len(entries))
        )
        for step in page.items:
            entry = LogEntry.from_record(step)
            size = len(entry.model_dump_json()) + 1  # and its comma
            if entries and used + size > budget:
                return StepsPage(entries, entries[-1].seq, cut_by_bytes=True)
            entries.append(entry)
            used += size
        if page.cursor is None or not page.items:
            return StepsPage(entries, None)
        after = page.items[-1].seq
    return StepsPage(entries, entries[-1].seq)


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
