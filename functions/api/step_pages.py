"""Pages of a run's execution log bounded by bytes as well as by count.

A step's entry carries its updates, so 500 entries can make tens of MB of JSON, past
Lambda's 6 MB limit for a synchronous response (API Gateway then answers 500 with nothing
of the page). Every listing of steps goes through :func:`bounded_steps`: it stops at a whole
entry before ``budget`` bytes of JSON and says where the next page starts.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field, replace
from typing import Annotated, Any

from fastapi import Depends, Path, Query

from engine.blobs import BLOB_ABOVE, digest_of, encoded
from engine.errors import InvalidInputError
from engine.ports import RunRecord, RunStore, StepRecord, TaskRecord
from engine.service import RunService
from functions.api.models import AttemptEntry, LogEntry

PAGE_BUDGET_BYTES = 1_000_000
"""The entries of one page stop before this many bytes of JSON (one entry is always given,
whatever its size: a step's updates are bounded by the state limit, 350 KB by default)."""
READ_CHUNK = 100
"""Steps read from the store per query while a page fills."""


@dataclass(frozen=True, slots=True)
class SeqWindow:
    """The page a listing by ``seq`` asks for (the history, the log)."""

    after: int
    limit: int


def seq_window(default_limit: int) -> Any:
    """The ``after`` and ``limit`` query parameters of a listing by ``seq``, as a FastAPI
    dependency: ``window: Annotated[SeqWindow, seq_window(100)]``."""

    def window(
        after: Annotated[int, Query(ge=-1, description="Entries with a greater `seq`")] = -1,
        limit: Annotated[int, Query(ge=1, le=500, description="Page size")] = default_limit,
    ) -> SeqWindow:
        return SeqWindow(after, limit)

    return Depends(window)


StepSeq = Annotated[int, Path(ge=0, le=1_000_000, description="The superstep's `seq`")]
"""The ``{seq}`` of a route under ``/runs/{run_id}/steps/``."""


@dataclass(frozen=True, slots=True)
class TaskWindow:
    """The page of a superstep's tasks a request asks for (:func:`task_page`)."""

    after: str | None
    limit: int


def task_window(prefix: str, next_field: str) -> Any:
    """The query parameters ``<prefix>after`` and ``<prefix>limit`` that page a superstep's
    tasks, as a FastAPI dependency: ``tasks: Annotated[TaskWindow, task_window("", ...)]``.
    ``next_field`` names the reply's field whose value ``after`` takes."""
    after_query = Query(
        None, alias=f"{prefix}after", max_length=2048,
        description=f"The previous page's `{next_field}`",
    )  # fmt: skip
    limit_query = Query(100, alias=f"{prefix}limit", ge=1, le=500, description="Tasks per page")

    def window(after: str | None = after_query, limit: int = limit_query) -> TaskWindow:
        return TaskWindow(after, limit)

    return Depends(window)


class Budget:
    """The whole entries of one page until the next would pass ``limit`` bytes of JSON (the
    first always fits, whatever its size)."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = PAGE_BUDGET_BYTES if limit is None else limit
        self.used, self.taken = 0, 0

    def admits(self, size: int) -> bool:
        """Whether an entry of ``size`` bytes of JSON fits; if so it is counted in."""
        size += 1  # and its comma
        if self.taken and self.used + size > self.limit:
            return False
        self.used, self.taken = self.used + size, self.taken + 1
        return True


def task_page(
    store: RunStore, run_id: str, seq: int, after: str | None, limit: int
) -> tuple[list[TaskRecord], str | None]:
    """Up to ``limit`` tasks of superstep ``seq`` after the cursor ``after``, as many whole
    ones as fit in :data:`PAGE_BUDGET_BYTES`, and the cursor of the next page: one page
    read from the store (:meth:`~engine.ports.RunStore.list_tasks_page`), never the whole
    fan-in.

    The cursor names a page of the store and how many of its tasks were given already: a
    page cut by bytes goes on, with the next request, from the task it stopped before."""
    start, skip = _task_cursor(after, seq)
    page = store.list_tasks_page(run_id, seq, start, skip + limit)
    records, following = page.items, page.cursor
    taken: list[TaskRecord] = []
    fits = Budget()
    for record in records[skip:]:
        if not fits.admits(len(json.dumps(record.updates, default=str))):
            return taken, _encode_task_cursor(seq, start, skip + len(taken))
        taken.append(record)
    if following is None or not records[skip:]:
        return taken, None
    return taken, _encode_task_cursor(seq, following, 0)


def _encode_task_cursor(seq: int, start: str | None, skip: int) -> str:
    doc = json.dumps({"seq": seq, "from": start, "skip": skip}, separators=(",", ":"))
    return base64.urlsafe_b64encode(doc.encode()).decode().rstrip("=")


def _task_cursor(cursor: str | None, seq: int) -> tuple[str | None, int]:
    """The store cursor and the tasks of its page already given; a cursor of another
    superstep, or one this API did not give, is refused (422)."""
    if cursor is None:
        return None, 0
    try:
        doc = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        of, start, skip = doc["seq"], doc["from"], doc["skip"]
    except (ValueError, TypeError, KeyError, binascii.Error):
        raise InvalidInputError("invalid cursor") from None
    if of != seq or not (start is None or isinstance(start, str)):
        raise InvalidInputError("invalid cursor")
    if type(skip) is not int or skip < 0:
        raise InvalidInputError("invalid cursor")
    if skip > 500:  # a page is 500 tasks at most
        raise InvalidInputError("invalid cursor")
    return start, skip


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
    fits = Budget(budget)
    while len(entries) < limit:
        page = service.store.list_steps(
            run_id, after=after, limit=min(READ_CHUNK, limit - len(entries))
        )
        for step in page.items:
            entry = LogEntry.from_record(step)
            if not fits.admits(len(entry.model_dump_json())):
                return StepsPage(entries, entries[-1].seq, cut_by_bytes=True, retried=retried)
            entries.append(entry)
            retried.extend([step.seq] if _retried(step) else [])
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
