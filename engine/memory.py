"""In-memory adapters of every port: the in-process runner's store, and test doubles.

The store keeps the same atomicity promises as the DynamoDB store (one lock stands in for
DynamoDB's conditional writes) and passes the same contract suite.
"""

from __future__ import annotations

import bisect
import json
import operator
import threading
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, get_args

from engine import deltas
from engine.errors import (
    ConflictError,
    GraphNotFound,
    InvalidInputError,
    NotFoundError,
    RecordTooLargeError,
    RunNotFound,
    StepConflict,
)
from engine.ports import (
    AttemptRecord,
    Audience,
    Clock,
    Connection,
    Deadline,
    FoldRecord,
    GraphRecord,
    Hop,
    Page,
    PauseRecord,
    RunEnd,
    RunRecord,
    RunStatus,
    Slot,
    StepRecord,
    TaskRecord,
)


def _deadline_key(deadline: Deadline) -> tuple[str, int, str, str]:
    return (deadline.run_id, deadline.seq, deadline.task, deadline.kind)


def _pause_slot(pause: PauseRecord) -> tuple[str, int, str]:
    return (pause.node, -1 if pause.index is None else pause.index, pause.kind)


def _page(items: list[Any], limit: int, cursor: str | None) -> Page[Any]:
    if cursor and not (cursor.isascii() and cursor.isdigit()):  # "²".isdigit() is True
        raise InvalidInputError("invalid cursor")
    start = int(cursor) if cursor else 0
    end = start + max(1, limit)
    return Page(items[start:end], str(end) if end < len(items) else None)


class MemoryRunStore:
    """A :class:`~engine.ports.RunStore` in a process's memory.

    A record committed here is kept as it was given, not copied: records are immutable, and
    a committer does not change the dicts in one after its commit (the protocol never does:
    each close makes a new state). Every read hands out dicts of its own."""

    def __init__(self, clock: Clock | None = None, item_limit_bytes: int | None = None) -> None:
        self._lock = threading.Lock()
        self._item_limit = item_limit_bytes
        """Refuse step records larger than this serialised, as DynamoDB refuses items above
        400 KB (``None``: no limit): a test of wide supersteps stays fast on a small limit."""
        self._graphs: dict[str, GraphRecord] = {}
        self._runs: dict[str, RunRecord] = {}
        self._logs: dict[str, _Log] = {}
        """Per run, its committed steps (one entry a run: a commit and a slot check each
        look the run up once)."""
        self._states = deltas.StateCache(frozen=False)
        self._tasks: dict[tuple[str, int], dict[tuple[str, int], TaskRecord]] = {}
        self._task_counts: Counter[tuple[str, int]] = Counter()
        self._task_ends: dict[tuple[str, int], float] = {}
        self._task_order: dict[tuple[str, int], list[tuple[str, TaskRecord]]] = {}
        """Per superstep, its tasks in slot order (a paged read bisects it)."""
        self._folds: dict[tuple[str, int], FoldRecord] = {}
        self._attempts: dict[tuple[str, int], dict[tuple[str, int, int], AttemptRecord]] = {}
        self._pauses: dict[tuple[str, int], dict[tuple[str, int, str], PauseRecord]] = {}
        self._deadlines: dict[tuple[str, int, str, str], Deadline] = {}
        self._connections: dict[str, Connection] = {}
        self._subscriptions: dict[str, dict[str, int | None]] = {}
        """Per run, its subscribers' connection ids and what their replay reached."""
        self._clock = clock

    # -- graphs ----------------------------------------------------------------------------
    def put_graph(self, graph: GraphRecord) -> None:
        with self._lock:
            if graph.graph_id in self._graphs:
                raise ConflictError(f"graph {graph.graph_id!r} already exists")
            self._graphs[graph.graph_id] = graph

    def get_graph(self, graph_id: str) -> GraphRecord:
        try:
            return self._graphs[graph_id]
        except KeyError:
            raise GraphNotFound(graph_id) from None

    def list_graphs(
        self, limit: int = 50, cursor: str | None = None, owner: str | None = None
    ) -> Page[GraphRecord]:
        graphs = [g for g in self._graphs.values() if owner is None or g.owner == owner]
        graphs.sort(key=lambda g: (-g.created_at, g.graph_id))
        return _page(graphs, limit, cursor)

    # -- runs ------------------------------------------------------------------------------
    def create_run(self, run: RunRecord, first: StepRecord | None = None) -> tuple[RunRecord, bool]:
        with self._lock:
            existing = self._runs.get(run.run_id)
            if existing is not None:
                return self._view(existing), False
            self._runs[run.run_id] = run
            self._logs[run.run_id] = _Log()
            if first is not None:
                self._store(first)
            return self._view(run), True

    def _view(self, run: RunRecord) -> RunRecord:
        log = self._logs.get(run.run_id)
        steps = log.steps if log is not None else []
        return run.with_latest(self._full(run.run_id, len(steps) - 1) if steps else None)

    # -- lean steps (engine/deltas.py) -----------------------------------------------------
    def _full(self, run_id: str, first: int, last: int | None = None) -> StepRecord:
        return self._full_range(run_id, first, first if last is None else last)[0]

    def _full_range(self, run_id: str, first: int, last: int) -> list[StepRecord]:
        """Steps ``first``..``last`` with their state and updates, rebuilt from the nearest
        full state (or the last state read, :class:`~engine.deltas.StateCache`, or the last
        step committed). Each read gets dicts of its own: a caller that changes a state it
        read changes no other reader's."""
        log = self._logs[run_id]
        stored, tip = log.stored, log.tip
        if tip is not None and first == tip.seq == last:
            return [_record(_step_values(tip), dict(tip.state), dict(tip.updates))]
        lo, start = deltas.start_of(first, self._states.get(run_id))
        read = stored[max(lo, 0) : last + 1]
        if lo == deltas.HEADER:
            read = [deltas.Stored(deltas.HEADER, {}, self._runs[run_id].input), *read]
        rebuilt = deltas.rebuild(read, start)
        self._states.put(run_id, last, rebuilt.states[last], rebuilt.since)
        # A state a delta was applied to is this read's own; a snapshot's, or the state the
        # read started from, is shared with the store: copied.
        shared = start[1] if start is not None else None
        whole = []
        for r in log.steps[first : last + 1]:
            kept, state = stored[r[_SEQ]], rebuilt.states[r[_SEQ]]
            own = dict(state) if state is kept.state or state is shared else state
            whole.append(_record(r, own, deltas.updates_of(kept.delta, state)))
        return whole

    def _store(self, step: StepRecord) -> None:
        """Keep ``step`` lean (under the lock): its delta, and its full state when due."""
        run_id = step.run_id
        log = self._logs[run_id]
        tip = log.tip
        if not step.seq:
            before = self._runs[run_id].input
        elif tip is not None and tip.seq == step.seq - 1:
            before = tip.state
        else:
            before = self._full(run_id, step.seq - 1).state
        stored, log.since = deltas.lean(step.seq, step.updates, step.state, before, log.since)
        log.stored.append(stored)
        log.steps.append(_step_values(step))
        log.tip = step  # as committed (see the class): a slot check reads it as it is

    def stored_step(self, run_id: str, seq: int) -> deltas.Stored:
        """How step ``seq`` is kept (for the contract suite)."""
        return self._logs[run_id].stored[seq]

    def get_run(self, run_id: str) -> RunRecord:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                raise RunNotFound(run_id)
            return self._view(run)

    def get_run_header(self, run_id: str) -> RunRecord:
        with self._lock:
            run = self._runs.get(run_id)
        if run is None:
            raise RunNotFound(run_id)
        return replace(run, input={}, state={}, node=None, steps=0)

    def list_runs(
        self,
        graph_id: str | None = None,
        status: RunStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
        owner: str | None = None,
    ) -> Page[RunRecord]:
        runs = [
            r
            for r in self._runs.values()
            if (graph_id is None or r.graph_id == graph_id)
            and (status is None or r.status == status)
            and (owner is None or r.owner == owner)
        ]
        runs.sort(key=lambda r: (-r.created_at, r.run_id))
        page = _page(runs, limit, cursor)
        with self._lock:
            return Page([self._view(r) for r in page.items], page.cursor)

    def count_runs(
        self, graph_id: str | None = None, owner: str | None = None, up_to: int = 10_000
    ) -> tuple[dict[str, int], bool]:
        with self._lock:
            found = [r.status for r in self._runs.values()
                     if (graph_id is None or r.graph_id == graph_id)
                     and (owner is None or r.owner == owner)]  # fmt: skip
        counts = dict.fromkeys(get_args(RunStatus), 0)
        counts.update(Counter(found[: max(1, up_to)]))
        return counts, len(found) <= max(1, up_to)

    def commit_step(self, step: StepRecord, end: RunEnd | None = None) -> None:
        if self._item_limit is not None:
            size = len(json.dumps(asdict(step), default=str))
            if size > self._item_limit:
                raise RecordTooLargeError("step", size, self._item_limit)
        with self._lock:
            run = self._runs.get(step.run_id)
            if run is None:
                raise RunNotFound(step.run_id)
            steps = self._logs[step.run_id].steps
            if step.seq < len(steps) or (end is not None and run.status != end.from_status):
                raise StepConflict(step.run_id, step.seq)
            if step.seq > len(steps):
                raise ValueError(f"step {step.seq} committed before step {len(steps)}")
            self._store(step)
            if end is not None:
                limit = run.max_steps if end.max_steps is None else end.max_steps
                self._runs[step.run_id] = replace(
                    run, status=end.status, error=end.error, updated_at=step.started_at,
                    max_steps=limit,
                )  # fmt: skip

    def get_step(self, run_id: str, seq: int) -> StepRecord | None:
        with self._lock:
            log = self._logs.get(run_id)
            steps = log.steps if log is not None else []
            return self._full(run_id, seq) if 0 <= seq < len(steps) else None

    def commit_task(self, task: TaskRecord, *, counted: bool = False) -> None:
        with self._lock:
            slots = self._tasks.setdefault((task.run_id, task.seq), {})
            slot = (task.node, -1 if task.index is None else task.index)
            if slot in slots:
                raise StepConflict(task.run_id, task.seq)
            slots[slot] = task
            bisect.insort(self._task_order.setdefault((task.run_id, task.seq), []),
                          (_slot_key(task), task), key=lambda k: k[0])  # fmt: skip
            if counted:
                self._task_counts[task.run_id, task.seq] += 1
                self._task_ends[task.run_id, task.seq] = task.started_at + task.duration_ms / 1000

    def count_tasks(self, run_id: str, seq: int) -> int:
        with self._lock:
            return self._task_counts[run_id, seq]

    def get_task(self, run_id: str, seq: int, node: str, index: int | None) -> TaskRecord | None:
        slot = (node, -1 if index is None else index)
        return self._tasks.get((run_id, seq), {}).get(slot)

    def list_tasks(self, run_id: str, seq: int) -> list[TaskRecord]:
        with self._lock:
            slots = self._tasks.get((run_id, seq), {})
            return [slots[k] for k in sorted(slots)]

    # -- a wide superstep's close, page by page (engine/fold.py) -----------------------------
    def list_tasks_page(
        self, run_id: str, seq: int, after: str | None = None, limit: int = 1000
    ) -> Page[TaskRecord]:
        with self._lock:
            keyed = self._task_order.get((run_id, seq), [])
            start = 0 if after is None else bisect.bisect_right(keyed, after, key=lambda k: k[0])
            page = keyed[start : start + max(1, limit)]
            more = start + len(page) < len(keyed)
        return Page([t for _, t in page], page[-1][0] if more else None)

    def task_progress(self, run_id: str, seq: int) -> tuple[int, float]:
        with self._lock:
            return self._task_counts[run_id, seq], self._task_ends.get((run_id, seq), 0.0)

    def commit_fold(self, fold: FoldRecord, after: str | None) -> None:
        with self._lock:
            stored = self._folds.get((fold.run_id, fold.seq))
            if (stored.cursor if stored is not None else None) != after:
                raise StepConflict(fold.run_id, fold.seq)
            # a copy, as a write to a table is: the folder goes on changing its own
            self._folds[fold.run_id, fold.seq] = replace(
                fold, state=json.loads(json.dumps(fold.state)),
                folded=json.loads(json.dumps(fold.folded)),
            )  # fmt: skip

    def get_fold(self, run_id: str, seq: int) -> FoldRecord | None:
        with self._lock:
            fold = self._folds.get((run_id, seq))
        if fold is None:
            return None
        return replace(fold, state=json.loads(json.dumps(fold.state)))

    # -- failed attempts of retried tasks (engine/retries.py) --------------------------------
    def commit_attempt(self, attempt: AttemptRecord) -> None:
        with self._lock:
            slots = self._attempts.setdefault((attempt.run_id, attempt.seq), {})
            slot = (attempt.node, -1 if attempt.index is None else attempt.index, attempt.attempt)
            if slot in slots:
                raise StepConflict(attempt.run_id, attempt.seq)
            slots[slot] = attempt

    def list_attempts(self, run_id: str, seq: int) -> list[AttemptRecord]:
        with self._lock:
            slots = self._attempts.get((run_id, seq), {})
            return [slots[k] for k in sorted(slots)]

    # -- tasks that wait for input (engine/pauses.py) ----------------------------------------
    def commit_pause(self, pause: PauseRecord, *, hold: bool) -> None:
        with self._lock:
            slots = self._pauses.setdefault((pause.run_id, pause.seq), {})
            slot = _pause_slot(pause)
            run = self._runs.get(pause.run_id)
            if slot in slots or (hold and (run is None or run.status != "running")):
                raise StepConflict(pause.run_id, pause.seq)
            slots[slot] = pause
            if pause.until is not None:
                deadline = Deadline(pause.run_id, pause.seq, pause.task, pause.kind, pause.until)
                self._deadlines[_deadline_key(deadline)] = deadline
            if hold and run is not None:
                self._runs[pause.run_id] = replace(run, status="paused", updated_at=pause.since)

    def list_pauses(self, run_id: str, seq: int) -> list[PauseRecord]:
        with self._lock:
            slots = self._pauses.get((run_id, seq), {})
            return [slots[k] for k in sorted(slots)]

    def answer_pause(self, pause: PauseRecord) -> None:
        with self._lock:
            slots = self._pauses.get((pause.run_id, pause.seq), {})
            stored = slots.get(_pause_slot(pause))
            run = self._runs.get(pause.run_id)
            if stored is None or not stored.pending or run is None:
                raise StepConflict(pause.run_id, pause.seq)
            if run.status not in ("paused", "running"):
                raise StepConflict(pause.run_id, pause.seq)
            slots[_pause_slot(pause)] = replace(
                stored, answered_at=pause.answered_at, value=pause.value,
                timed_out=pause.timed_out, committed_by=pause.committed_by,
            )  # fmt: skip
            if run.status == "paused":
                at = pause.answered_at if pause.answered_at is not None else run.updated_at
                self._runs[pause.run_id] = replace(run, status="running", updated_at=at)

    def due_deadlines(self, now: float, limit: int = 100) -> list[Deadline]:
        with self._lock:
            due = sorted((d for d in self._deadlines.values() if d.until <= now),
                         key=lambda d: (d.until, d.run_id))  # fmt: skip
        return due[: max(1, limit)]

    def forget_deadline(self, deadline: Deadline) -> None:
        with self._lock:
            self._deadlines.pop(_deadline_key(deadline), None)

    def hold_run(self, run_id: str, pending: list[PauseRecord], at: float) -> bool:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or run.status != "running":
                return False
            for pause in pending:
                stored = self._pauses.get((pause.run_id, pause.seq), {}).get(_pause_slot(pause))
                if stored is None or not stored.pending:
                    return False
            self._runs[run_id] = replace(run, status="paused", updated_at=at)
            return True

    def list_steps(
        self, run_id: str, after: int = -1, limit: int = 100, *, states: bool = True
    ) -> Page[StepRecord]:
        if run_id not in self._runs:
            raise RunNotFound(run_id)
        with self._lock:
            steps = self._logs[run_id].steps[after + 1 :]
            kept = steps[: max(1, limit)]
            more = len(steps) > len(kept)
            if kept and states:  # kept without them (commit_step): rebuilt here
                page = self._full_range(run_id, kept[0][_SEQ], kept[-1][_SEQ])
            else:
                page = [_record(r, {}, {}) for r in kept]
        return Page(page, str(page[-1].seq) if more and page else None)

    # -- connections -----------------------------------------------------------------------
    def save_connection(self, connection: Connection) -> None:
        with self._lock:
            self._connections[connection.connection_id] = connection

    def get_connection(self, connection_id: str) -> Connection:
        try:
            return self._connections[connection_id]
        except KeyError:
            raise NotFoundError("connection", connection_id) from None

    def delete_connection(self, connection_id: str) -> None:
        with self._lock:
            self._connections.pop(connection_id, None)
            for subscribed in self._subscriptions.values():
                subscribed.pop(connection_id, None)

    def subscribe(self, connection_id: str, run_id: str) -> None:
        with self._lock:
            if connection_id not in self._connections:
                raise NotFoundError("connection", connection_id)
            self._subscriptions.setdefault(run_id, {})[connection_id] = None

    def unsubscribe(self, connection_id: str, run_id: str) -> None:
        with self._lock:
            self._subscriptions.get(run_id, {}).pop(connection_id, None)

    def subscribers(self, run_id: str) -> list[Connection]:
        with self._lock:
            replayed = dict(self._subscriptions.get(run_id, {}))
        if not replayed:  # the common case, asked at every hop: no clock read
            return []
        now = self._clock() if self._clock else 0.0
        conns = [
            replace(self._connections[c], replayed_through=replayed[c])
            for c in sorted(replayed)
            if c in self._connections
        ]
        return [c for c in conns if not now or c.expires_at > now]

    def record_replay(self, connection_id: str, run_id: str, through: int) -> None:
        with self._lock:
            subscribed = self._subscriptions.get(run_id, {})
            if connection_id in subscribed:
                subscribed[connection_id] = through

    def read_slot(self, run_id: str, seq: int) -> Slot:
        with self._lock:
            run = self._runs.get(run_id)
            log = self._logs.get(run_id)
            count = len(log.steps) if log is not None else 0
            previous = None
            if log is not None and 0 < seq <= count:  # the last step as kept (only read)
                tip = log.tip
                whole = tip is not None and tip.seq == seq - 1
                previous = tip if whole else self._full(run_id, seq - 1)
            watched = run is not None and bool(self._subscriptions.get(run_id))
        subscribers = tuple(self.subscribers(run_id)) if watched else ()
        return Slot(run if seq == 0 else None, previous, subscribers, count > seq)


class MemoryQueue:
    """A :class:`~engine.ports.StepQueue` that keeps hops in a FIFO, for in-process loops."""

    def __init__(self) -> None:
        self.hops: deque[Hop] = deque()

    def dispatch(self, hop: Hop) -> None:
        self.hops.append(hop)

    def dispatch_batch(self, hops: list[Hop]) -> None:
        self.hops.extend(hops)

    def drain(self, handle: Callable[[Hop], object], limit: int = 1_000_000) -> int:
        """Deliver hops to ``handle`` until the queue is empty; returns how many."""
        delivered = 0
        while self.hops and delivered < limit:
            handle(self.hops.popleft())
            delivered += 1
        return delivered


class RecordingNotifier:
    """A :class:`~engine.ports.Notifier` that keeps every event, in order."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def publish(
        self, run_id: str, events: list[dict[str, Any]], audience: Audience | None = None
    ) -> None:
        self.events.extend(events)


_STEP_FIELDS = tuple(f.name for f in fields(StepRecord))
_step_values = operator.attrgetter(*_STEP_FIELDS)
_Fields = tuple[Any, ...]
"""A step record's fields' values, in their order (``_step_values``)."""
_SEQ = _STEP_FIELDS.index("seq")
_UPDATES, _STATE = _STEP_FIELDS.index("updates"), _STEP_FIELDS.index("state")


@dataclass(slots=True)
class _Log:
    """A run's committed steps as the store keeps them."""

    steps: list[_Fields] = field(default_factory=list)
    """Each step's fields' values (a tuple costs a tenth of a record to make, and a commit
    makes one) without its state and updates: those are kept as :mod:`engine.deltas` keeps
    them (``stored``) and rebuilt on every read."""
    stored: list[deltas.Stored] = field(default_factory=list)
    since: int = 0
    """The delta bytes stored since the last full state."""
    tip: StepRecord | None = None
    """The last step as committed, whole: the slot check of the next hop and the next commit
    read it without rebuilding it."""


def _record(values: _Fields, state: dict[str, Any], updates: dict[str, Any]) -> StepRecord:
    """The step record of ``values`` (``_step_values``) with ``state`` and ``updates``:
    ``dataclasses.replace`` at half its cost, which every commit and read pays."""
    whole = list(values)
    whole[_STATE], whole[_UPDATES] = state, updates
    return StepRecord(*whole)


def _slot_key(task: TaskRecord) -> str:
    """A task's place in slot order (:meth:`~engine.ports.RunStore.list_tasks_page`), as the
    DynamoDB store's keys sort: ``-#<node>`` without an index, ``<index:06d>#<node>`` with."""
    slot = "-" if task.index is None else f"{task.index:06d}"
    return f"{slot}#{task.node}"
