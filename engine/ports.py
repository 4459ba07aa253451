"""Ports: what the run service needs from the world, and the records that cross them.

Every port has one calling convention (plain synchronous calls): the worker Lambda, the
HTTP API (in FastAPI's thread pool) and the in-process runner all call them the same way.

The run lifecycle (statuses, which accept hops, transitions) is :mod:`engine.lifecycle`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Literal, Protocol, TypeVar

from engine.lifecycle import FINAL_STATUSES, RunEnd, RunStatus
from engine.records import record

__all__ = ["FINAL_STATUSES", "RunEnd", "RunStatus"]

StepStatus = Literal["ok", "failed", "cancelled"]

Clock = Callable[[], float]
"""Seconds since the epoch; injected so tests can pin time."""

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    cursor: str | None = None
    """Opaque; pass it back to get the next page. ``None``: no more pages."""


@dataclass(frozen=True, slots=True)
class GraphRecord:
    graph_id: str
    name: str
    definition: dict[str, Any]
    """The canonical JSON form (``Graph.to_dict()``)."""
    created_at: float
    owner: str | None = None


@record
class StepRecord:
    """One committed step of a run: the execution log entry and the state after it.

    ``seq`` counts from 0 and is the slot the step occupies; each slot is written once.
    """

    run_id: str
    seq: int
    node: str
    tool: str
    status: StepStatus
    updates: dict[str, Any]
    state: dict[str, Any]
    next_node: str | None
    """Where the run goes next; ``END`` or ``None`` when this step ended the run."""
    started_at: float
    duration_ms: float
    error: str | None = None
    attempt: int = 1
    committed_by: str = ""
    """The delivery (SQS message id, Lambda request id) whose worker committed the step."""
    run_status: RunStatus = "running"
    """The run's status once this step is committed; anything but running ends the run."""
    next_nodes: tuple[str, ...] = ()
    """Set when the next superstep runs several nodes (a fan-out, a join, a map): then
    ``next_node`` is ``None``. A chain leaves it empty and names its one ``next_node``."""
    joins: dict[str, list[str]] = field(default_factory=dict)
    """Join node -> the nodes it waits for that have run (joins still waiting after this)."""
    tasks: tuple[dict[str, Any], ...] = ()
    """A superstep of several tasks: each one's summary (``task``, ``node``, ``index``,
    ``tool``, ``status``, ``duration_ms``, ``error``); its updates are in its task record,
    and ``updates`` holds what the superstep changed once merged."""
    notified: tuple[str, ...] = ()
    """The subscribers (connection ids) its events went to, as read before its commit; the
    next superstep's publisher posts it to a subscriber not among them that may have missed
    it (:class:`Audience`)."""
    graph_id: str = ""
    """The run's graph, copied from the record this superstep started from (the header for
    superstep 0): a hop of the next superstep is checked against it, never believed."""
    max_steps: int = 0
    """The run's step limit, carried the same way (0: not recorded; read the header)."""
    breakpoints: dict[str, list[str]] | None = None
    """The run's own breakpoints (``POST /runs`` ``interrupt_before``/``interrupt_after``),
    copied down from its header as the graph and the step limit are: the slot check reads
    them from here (engine/pauses.py)."""
    tasks_total: int = 0
    """How many tasks the superstep ran, when ``tasks`` keeps only some of their summaries
    (a wide map's do not fit in one item: every task has its own record)."""
    sends: tuple[dict[str, Any], ...] = ()
    """The items the next superstep runs besides its nodes (``{"node", "payload"}``, in the
    order sent): the next superstep's plan is this record's state, nodes and sends."""
    deferred: tuple[str, ...] = ()
    """Deferred nodes reached and still waiting for nothing else to be left to run."""
    child_run_id: str | None = None
    """A superstep of one subgraph task: the child run that did its work."""
    source: str = ""
    """Empty for a superstep its tasks closed; else the command that wrote the entry
    (``fork``, ``redrive``, ``edit``: :mod:`engine.history`), which runs no tool."""

    @property
    def ended_at(self) -> float:
        """About when the superstep closed: when the slot after it opened."""
        return self.started_at + self.duration_ms / 1000

    @property
    def successors(self) -> tuple[str, ...]:
        """The nodes the next superstep runs (empty once the run is final)."""
        if self.run_status != "running":
            return ()
        if self.next_nodes or self.sends:
            return self.next_nodes
        return (self.next_node,) if self.next_node not in (None, "END") else ()

    def log_entry(self) -> dict[str, Any]:
        """The step as the execution log shows it (no full state)."""
        entry = {
            "seq": self.seq,
            "node": self.node,
            "tool": self.tool,
            "status": self.status,
            "updates": self.updates,
            "next": list(self.next_nodes) if self.next_nodes else self.next_node,
            "started_at": self.started_at,
            "duration_ms": self.duration_ms,
            "error": self.error,
            "attempt": self.attempt,
            "run_status": self.run_status,
        }
        if self.tasks:
            entry["tasks"] = [dict(t) for t in self.tasks]
        if self.tasks_total:
            entry["tasks_total"] = self.tasks_total
        if self.child_run_id is not None:
            entry["child_run_id"] = self.child_run_id
        if self.source:
            entry["source"] = self.source
        return entry


@record
class TaskRecord:
    """One committed task of a superstep that runs several (slot: superstep, node, index).

    A superstep of one task needs no task record: its step record is the task and the
    superstep's close at once, which is what keeps a chain at one write per step."""

    run_id: str
    seq: int
    """The superstep."""
    node: str
    index: int | None
    """The map item's index; ``None`` for a node that is not a map."""
    tool: str
    status: StepStatus
    updates: dict[str, Any]
    targets: tuple[str, ...]
    started_at: float
    duration_ms: float
    error: str | None = None
    attempt: int = 1
    committed_by: str = ""
    sends: tuple[dict[str, Any], ...] = ()
    """The items its router or Command sent (``{"node", "payload"}``), in order."""
    child_run_id: str | None = None
    """A subgraph node's task: the child run that did its work."""

    @property
    def key(self) -> str:
        return self.node if self.index is None else f"{self.node}[{self.index}]"

    def summary(self) -> dict[str, Any]:
        """What the superstep's step record keeps of this task."""
        doc: dict[str, Any] = {"task": self.key, "node": self.node, "tool": self.tool,
                               "status": self.status, "duration_ms": self.duration_ms}  # fmt: skip
        if self.index is not None:
            doc["index"] = self.index
        if self.error is not None:
            doc["error"] = self.error
        if self.child_run_id is not None:
            doc["child_run_id"] = self.child_run_id
        if self.attempt > 1:
            doc["attempt"] = self.attempt
        return doc


@dataclass(frozen=True, slots=True)
class FoldRecord:
    """A wide superstep's close, part way (:mod:`engine.fold`): what the pages of its task
    records read so far merged into, and where the next page starts. Rewritten once per page,
    each time conditional on the cursor it was read at (:meth:`RunStore.commit_fold`)."""

    run_id: str
    seq: int
    cursor: str
    """Where the next page starts: pass it to :meth:`RunStore.list_tasks_page` as ``after``."""
    state: dict[str, Any]
    """The state before the superstep with the pages so far merged in (its large values may
    be kept apart, as a step's are)."""
    folded: dict[str, Any]
    """Everything else the close needs of the pages so far (JSON: :class:`engine.fold.Folded`)."""
    node: str
    index: int | None
    """The task whose fan-in started the fold: a task of the plan, so the slot check of a
    fold hop has one to check."""
    pages: int = 1
    committed_by: str = ""
    updated_at: float = 0.0
    """When this page was folded: the sweeper's sign of progress."""


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """A failed attempt of a task whose node retries (engine/retries.py): the only thing a
    failed attempt commits. Slot: run, superstep, node, index, attempt; written once, by the
    one copy of a duplicated hop that schedules the next attempt."""

    run_id: str
    seq: int
    node: str
    index: int | None
    attempt: int
    tool: str
    error: str
    error_type: str
    started_at: float
    duration_ms: float
    retry_at: float | None
    """When the next attempt is due (epoch seconds); ``None``: retries are spent."""
    committed_by: str = ""

    @property
    def key(self) -> str:
        return self.node if self.index is None else f"{self.node}[{self.index}]"

    def log_entry(self) -> dict[str, Any]:
        """The attempt as ``GET /runs/{id}/steps`` lists it, beside its superstep's steps."""
        doc: dict[str, Any] = {
            "seq": self.seq, "task": self.key, "node": self.node, "tool": self.tool,
            "status": "failed", "attempt": self.attempt, "error": self.error,
            "error_type": self.error_type, "started_at": self.started_at,
            "duration_ms": self.duration_ms, "retry_at": self.retry_at,
        }  # fmt: skip
        if self.index is not None:
            doc["index"] = self.index
        return doc


PauseKind = Literal["interrupt", "before", "after"]
"""Why a task waits: an interrupt (an ``interrupt`` node, or a tool's ``ctx.interrupt``), or a
static breakpoint before or after its node (``interrupt_before`` / ``interrupt_after``)."""


@dataclass(frozen=True, slots=True)
class PauseRecord:
    """A task that waits for input (engine/pauses.py). Slot: run, superstep, node, index,
    kind; written once, and answered once (a resume, or its deadline passing)."""

    run_id: str
    seq: int
    node: str
    index: int | None
    kind: PauseKind
    since: float
    prompt: str | None = None
    key: str | None = None
    """The state key the answer is written under (through its reducer); ``None``: the answer
    is not kept (a breakpoint, or a question whose answer only routes)."""
    schema: dict[str, Any] | None = None
    until: float | None = None
    """Its deadline (epoch seconds): past it, the task goes on by ``on_timeout``."""
    on_timeout: str | None = None
    held: dict[str, Any] = field(default_factory=dict)
    """What the task had done when it paused, committed with its answer: ``updates``,
    ``targets``, ``sends``, ``tool``, ``duration_ms`` (a tool's ``ctx.interrupt``, a breakpoint
    after its node)."""
    answered_at: float | None = None
    value: Any = None
    timed_out: bool = False
    committed_by: str = ""

    @property
    def task(self) -> str:
        return self.node if self.index is None else f"{self.node}[{self.index}]"

    @property
    def pending(self) -> bool:
        return self.answered_at is None

    def question(self) -> dict[str, Any]:
        """What ``GET /runs/{id}`` shows of it (``pending``)."""
        return {
            "id": f"{self.seq}/{self.kind}/{self.task}",
            "task": self.task, "node": self.node, "index": self.index, "kind": self.kind,
            "prompt": self.prompt, "key": self.key, "schema": self.schema,
            "since": self.since, "until": self.until, "on_timeout": self.on_timeout,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Deadline:
    """When a pause's question stops waiting (:meth:`RunStore.due_deadlines`)."""

    run_id: str
    seq: int
    task: str
    kind: str
    until: float


@record
class RunRecord:
    """A run as stores return it: the header plus its latest committed step's view."""

    run_id: str
    graph_id: str
    status: RunStatus
    input: dict[str, Any]
    max_steps: int
    created_at: float
    updated_at: float
    state: dict[str, Any] = field(default_factory=dict)
    """The state after the latest committed step (the input before the first)."""
    node: str | None = None
    """The node the next step runs; ``None`` once the run is final."""
    steps: int = 0
    """How many steps are committed."""
    error: str | None = None
    idempotency_key: str | None = None
    owner: str | None = None
    input_digest: str | None = None
    """A digest of ``input`` (:func:`engine.idempotency.input_digest`), kept on runs started
    with an idempotency key: a second start with the key compares it without reading the
    input back."""
    parent: dict[str, Any] | None = None
    """A child run (a subgraph node's work): its parent's run, superstep and task
    (:class:`engine.subgraphs.ParentLink`), where its end is reported."""
    parent_run_id: str | None = None
    """A fork's: the run it was forked from (:mod:`engine.history`)."""
    parent_seq: int | None = None
    """A fork's: the superstep of ``parent_run_id`` whose state it started from."""
    breakpoints: dict[str, list[str]] | None = None
    """Its own static breakpoints, beside its graph's: ``{"before": [...], "after": [...]}``
    (``POST /runs``; engine/pauses.py)."""

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    def with_latest(self, step: StepRecord | None) -> RunRecord:
        """This header completed with the view of ``step`` (``None``: nothing committed).

        A header's ``node`` is the graph's entry, set when the run is created."""
        if step is None:
            node = None if self.is_final else self.node
            return replace(self, state=self.input, node=node, steps=0)
        node = step.next_node if step.run_status == "running" else None
        return replace(self, state=step.state, node=node, steps=step.seq + 1)


@dataclass(frozen=True, slots=True)
class Connection:
    connection_id: str
    endpoint: str
    """Where to post to this connection (API Gateway Management API URL)."""
    expires_at: int
    owner: str | None = None
    """Who connected (the token's ``sub``, from the ``$connect`` authorizer)."""
    admin: bool = False
    """Whether that caller may see every owner's runs."""
    replayed_through: int | None = None
    """As a run's subscriber: the last ``seq`` its subscription replayed (``None`` until the
    replay is recorded). Only the step after it can have reached it neither live nor by
    replay (:class:`Audience`)."""


@record
class Slot:
    """What a hop of superstep ``seq`` reads before its commit, in one consistent read: the
    record its superstep starts from (the run's header for superstep 0, the step record of
    superstep ``seq - 1`` after it; ``None`` when there is none) and the run's subscribers."""

    run: RunRecord | None
    """The run's header as stored (without its latest step), for superstep 0 only."""
    previous: StepRecord | None
    """The step record of superstep ``seq - 1``, for a later superstep only."""
    subscribers: tuple[Connection, ...]
    taken: bool = False
    """Slot ``seq`` itself (or a later one) is already written: the superstep closed, or
    the run was cancelled or failed into it. No task of it may start any more."""


class RunStore(Protocol):
    """Durable home of graphs, runs, their step logs, and WebSocket connections.

    Atomicity each implementation must give is stated per method; every implementation
    passes ``tests/contract/test_run_store.py``.
    """

    def put_graph(self, graph: GraphRecord) -> None:
        """Save a new graph. Graphs are immutable: an existing id raises ConflictError."""

    def get_graph(self, graph_id: str) -> GraphRecord:
        """Raises GraphNotFound."""

    def list_graphs(
        self, limit: int = 50, cursor: str | None = None, owner: str | None = None
    ) -> Page[GraphRecord]:
        """Newest first; only ``owner``'s graphs unless ``owner`` is None (every graph).
        Listing by owner reads an index, never the whole table. A listed graph carries what
        a listing shows (id, name, owner, created_at); its definition may be empty."""

    def create_run(self, run: RunRecord, first: StepRecord | None = None) -> tuple[RunRecord, bool]:
        """Atomically create ``run`` unless its id exists; return (the stored run, created).

        ``first``: a step record for slot 0 written in the same atomic write (a fork's entry,
        which carries the state it starts from and what runs next): both are written, or
        neither is."""

    def get_run(self, run_id: str) -> RunRecord:
        """The run with the view of its latest committed step. Raises RunNotFound."""

    def get_run_header(self, run_id: str) -> RunRecord:
        """The run's header alone, read strongly consistently: ids, graph, status, owner,
        limits, error, timestamps and links, without its input or the view of any step
        (``input`` and ``state`` empty, ``node`` None, ``steps`` 0). For what asks who owns
        a run and where it stands, not what it holds (a request's visibility check): it
        reads no step and no large value, whatever the run's state weighs. Raises
        RunNotFound."""

    def list_runs(
        self,
        graph_id: str | None = None,
        status: RunStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
        owner: str | None = None,
    ) -> Page[RunRecord]:
        """Newest first, filtered by graph, status and/or owner (None: any). A listed run
        carries what a listing shows (ids, status, error, owner, created_at, updated_at);
        its input, max_steps and view fields may be empty. Listing by owner reads an index,
        never the whole table."""

    def count_runs(
        self, graph_id: str | None = None, owner: str | None = None, up_to: int = 10_000
    ) -> tuple[dict[str, int], bool]:
        """How many runs are in each status (every status, zeros included), of one graph
        and/or owner (None: any), and whether the counts are exact: counting stops once
        ``up_to`` runs are counted (then each count is at least what it says). Reads the
        listing indexes' entries of the runs it counts, never a run's records nor the table."""

    def commit_step(self, step: StepRecord, end: RunEnd | None = None) -> None:
        """The exactly-once commit, and the one primitive that moves a run through its
        lifecycle (:mod:`engine.lifecycle`: a close that ends the run, a cancel, a dead
        letter's failure). Atomically: write ``step`` into slot ``step.seq`` of its run
        if and only if that slot is empty, and with ``end``, also set the run's status
        and error (and ``end.max_steps`` when given) in the same write, conditional on the
        run being in ``end.from_status``. Raises StepConflict if the slot is taken (or, with
        ``end``, if the run is not in ``end.from_status``: already final, or redriven).
        With ``end``, raises RunNotFound if there is no such run; without it, a commit for a
        run that was never created need not be detected (the DynamoDB store writes the step
        alone, with no read of the run: that is what keeps a step at one durable write)."""

    def get_step(self, run_id: str, seq: int) -> StepRecord | None:
        """The step in slot ``seq``, read strongly consistently."""

    def commit_task(self, task: TaskRecord, *, counted: bool = False) -> None:
        """Write ``task`` into its slot (run, superstep, node, index) if and only if that slot
        is empty; StepConflict if it is taken. One conditional write, no read of the run.

        ``counted``: the same write, atomically, adds one to its superstep's count of
        committed tasks (:meth:`count_tasks`); a taken slot adds nothing."""

    def count_tasks(self, run_id: str, seq: int) -> int:
        """How many tasks of superstep ``seq`` were committed ``counted``, read strongly
        consistently: one small read, whatever the superstep's size."""

    def get_task(self, run_id: str, seq: int, node: str, index: int | None) -> TaskRecord | None:
        """The task in that slot, read strongly consistently."""

    def list_tasks(self, run_id: str, seq: int) -> list[TaskRecord]:
        """Every committed task of superstep ``seq``, read strongly consistently (the fan-in:
        one query, paged by the store as needed)."""

    def list_tasks_page(
        self, run_id: str, seq: int, after: str | None = None, limit: int = 1000
    ) -> Page[TaskRecord]:
        """At most ``limit`` committed tasks of superstep ``seq`` after the cursor ``after``
        (``None``: from the first), read strongly consistently, in *slot order*: the tasks
        without an index by node, then the indexed ones by index, then node (the order of
        their keys). The page's cursor is where the next one starts (``None``: no more; a
        store may return a cursor whose next page turns out empty). A wide superstep's close
        reads its tasks this way, one page per hop (:mod:`engine.fold`)."""

    def task_progress(self, run_id: str, seq: int) -> tuple[int, float]:
        """The count of superstep ``seq``'s tasks committed ``counted``
        (:meth:`count_tasks`) and the end time of the one that counted last (0.0 when none
        did): one small read that tells the sweeper whether a wide superstep moves."""

    def commit_fold(self, fold: FoldRecord, after: str | None) -> None:
        """Write superstep ``fold.seq``'s fold record if and only if the one stored was read at
        cursor ``after`` (its ``cursor`` is ``after``; ``None``: there is none yet), in one
        conditional write; StepConflict otherwise (another copy folded that page first)."""

    def get_fold(self, run_id: str, seq: int) -> FoldRecord | None:
        """Superstep ``seq``'s fold record, read strongly consistently."""

    def list_steps(
        self, run_id: str, after: int = -1, limit: int = 100, *, states: bool = True
    ) -> Page[StepRecord]:
        """Committed steps with ``seq > after`` in order. Raises RunNotFound.

        The page's cursor is the seq of its last step (pass it back as ``after``); a store
        may return a cursor whose next page turns out empty. ``states=False``: each step
        without its state and updates (both empty), what a listing of the history shows; a
        store then rebuilds no state and reads no large value."""

    def save_connection(self, connection: Connection) -> None:
        """Record a WebSocket connection (expires at ``expires_at``, epoch seconds)."""

    def get_connection(self, connection_id: str) -> Connection:
        """A saved connection, with who opened it. NotFoundError("connection", id) if it was
        never saved (or was deleted)."""

    def delete_connection(self, connection_id: str) -> None:
        """Forget a connection and all its subscriptions. No error if unknown."""

    def subscribe(self, connection_id: str, run_id: str) -> None:
        """Subscribe a saved connection to a run's events; NotFoundError("connection", id)
        if it was never saved (or was deleted)."""

    def unsubscribe(self, connection_id: str, run_id: str) -> None:
        """No error if not subscribed."""

    def subscribers(self, run_id: str) -> list[Connection]:
        """Live connections subscribed to ``run_id``."""

    def record_replay(self, connection_id: str, run_id: str, through: int) -> None:
        """Note that the subscription of ``connection_id`` to ``run_id`` replayed the steps up
        to ``through`` (its subscribers then carry it). No error if not subscribed."""

    def read_slot(self, run_id: str, seq: int) -> Slot:
        """One consistent read of what a hop of superstep ``seq`` starts from (:class:`Slot`);
        an unknown run reads as an empty slot."""

    def commit_attempt(self, attempt: AttemptRecord) -> None:
        """Write ``attempt`` into its slot (run, superstep, node, index, attempt) if and only
        if that slot is empty; StepConflict if it is taken. One conditional write."""

    def list_attempts(self, run_id: str, seq: int) -> list[AttemptRecord]:
        """Every failed attempt recorded in superstep ``seq`` (of all its tasks), by task and
        attempt, read strongly consistently: one query."""

    def commit_pause(self, pause: PauseRecord, *, hold: bool) -> None:
        """Write ``pause`` into its slot (run, superstep, node, index, kind) if and only if
        that slot is empty (and, when it has an ``until``, its :class:`Deadline`); with
        ``hold``, move the run ``running -> paused`` in the same atomic write, conditional
        on the run being ``running``. StepConflict if the slot is taken or (with ``hold``)
        the run is not running."""

    def list_pauses(self, run_id: str, seq: int) -> list[PauseRecord]:
        """Every pause of superstep ``seq``, answered or not, read strongly consistently."""

    def answer_pause(self, pause: PauseRecord) -> None:
        """Record ``pause``'s answer (its ``answered_at``, ``value``, ``timed_out``,
        ``committed_by``) if and only if it is still pending, and move the run ``paused ->
        running`` (a ``running`` run stays so) in the same atomic write. StepConflict if it
        was answered already, or the run is neither paused nor running (it ended)."""

    def due_deadlines(self, now: float, limit: int = 100) -> list[Deadline]:
        """Deadlines of pauses (written with them by :meth:`commit_pause` when a pause has
        an ``until``) that have passed by ``now``, earliest first: one query, however many
        runs are paused. The sweeper keeps deadlines with them when no hop can be held."""

    def forget_deadline(self, deadline: Deadline) -> None:
        """Delete a deadline whose pause was answered. No error if it is gone already."""

    def hold_run(self, run_id: str, pending: list[PauseRecord], at: float) -> bool:
        """Move the run ``running -> paused`` if every pause in ``pending`` is still pending
        (one atomic write); False if it moved nothing (it is not running, or one of them was
        answered meanwhile: that answer's task goes on)."""


@record
class Hop:
    """A task to run: what a queue message or self-invocation carries.

    A hop is a request, never an authority: it names a run, a superstep, a node (and a map
    item) and the graph it claims, and the worker checks all of it against the run's own
    records before running anything (:meth:`engine.protocol.HopProtocol.process`). The
    state, the step limit and the plan always come from those records. ``recheck`` marks a
    hop that may be a duplicate (a re-dispatch or a redelivery): its worker looks at the
    slot before running the tool.
    """

    run_id: str
    graph_id: str
    seq: int
    node: str
    recheck: bool = False
    index: int | None = None
    """A map task: the index of its item; a task sent an item: the item's place among those
    sent to its superstep (its payload is in the previous superstep's record)."""
    parallel: bool = False
    """The superstep has several tasks: this one commits a task record, and the superstep
    closes once all have (a superstep of one task commits its step record directly)."""
    attempt: int = 1
    """Which attempt of its task this is (a retry: 2 and up); checked against the task's
    attempt records, never believed (engine/retries.py)."""
    delay_s: float = 0.0
    """How long the carrier should hold the hop before delivering it (SQS DelaySeconds, at
    most 900: a hop that comes early is held again). Not part of the message."""
    fold: bool = False
    """A fold hop (:mod:`engine.fold`): go on closing superstep ``seq`` of a wide superstep,
    from the fold record. It names a run and a superstep; everything else comes from records."""

    @property
    def task_key(self) -> str:
        return self.node if self.index is None else f"{self.node}[{self.index}]"

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "run_id": self.run_id,
            "graph_id": self.graph_id,
            "seq": self.seq,
            "node": self.node,
        }
        if self.recheck:
            doc["recheck"] = True
        if self.index is not None:
            doc["index"] = self.index
        if self.parallel:
            doc["parallel"] = True
        if self.attempt != 1:
            doc["attempt"] = self.attempt
        if self.fold:
            doc["fold"] = True
        return doc

    @classmethod
    def from_dict(cls, doc: Any) -> Hop:
        """Raises InvalidInputError for anything that is not a hop. Fields a hop no longer
        carries (``state``, ``max_steps``: older messages) are ignored, never used."""
        from engine.errors import InvalidInputError

        if not isinstance(doc, dict):
            raise InvalidInputError("not a hop message: not a JSON object")
        try:
            hop = cls(
                run_id=doc["run_id"],
                graph_id=doc["graph_id"],
                seq=doc["seq"],
                node=doc["node"],
                recheck=doc.get("recheck", False) is True,
                index=doc.get("index"),
                parallel=doc.get("parallel", False) is True,
                attempt=doc.get("attempt", 1),
                fold=doc.get("fold", False) is True,
            )
        except KeyError as exc:
            raise InvalidInputError(f"not a hop message: missing {exc}") from None
        flags = {"recheck": doc.get("recheck", False), "parallel": doc.get("parallel", False),
                 "fold": doc.get("fold", False)}  # fmt: skip
        if any(not isinstance(flag, bool) for flag in flags.values()):
            raise InvalidInputError("not a hop message: recheck, parallel and fold are booleans")
        _check_fields(hop)
        return hop


def _check_fields(hop: Hop) -> None:
    """Each field of the right JSON type, so a malformed hop fails at once with a reason
    rather than deep inside the protocol."""
    from engine.errors import InvalidInputError

    for name in ("run_id", "graph_id", "node"):
        value = getattr(hop, name)
        if not isinstance(value, str) or not value:
            raise InvalidInputError(f"not a hop message: {name} must be a non-empty string")
    if isinstance(hop.seq, bool) or not isinstance(hop.seq, int) or hop.seq < 0:
        raise InvalidInputError("not a hop message: bad run_id or seq")
    index = hop.index
    if index is not None and (isinstance(index, bool) or not isinstance(index, int) or index < 0):
        raise InvalidInputError("not a hop message: bad index")
    attempt = hop.attempt
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise InvalidInputError("not a hop message: bad attempt")


class StepQueue(Protocol):
    """Carries hops to workers, at least once."""

    def dispatch(self, hop: Hop) -> None:
        """Send ``hop``; raises on failure (the caller's message is then retried)."""

    def dispatch_batch(self, hops: list[Hop]) -> None:
        """Send every hop of a fan-out, batched where the carrier allows (SQS: ten per
        SendMessageBatch); raises if any could not be sent (all are then sent again: hops
        are idempotent)."""


@record
class Audience:
    """Who gets a superstep's events, and the step before it for those who may have missed it.

    A hop reads the run's subscribers with its slot, while its tool runs, so that the read is
    off the path between two commits. A client that subscribes after that read and replays
    the log before the commit gets that step neither live nor by replay; so the next
    superstep's publisher, whose read comes after the commit, also posts the step before its
    own to every subscriber that may have missed it (:meth:`missed_previous`). A run's last
    step has no next publisher: its subscribers are read after its commit.
    """

    subscribers: tuple[Connection, ...] | None = None
    """Read before the commit; ``None``: the notifier reads them when it publishes."""
    previous: StepRecord | None = None
    """The superstep before, as committed (``None`` for superstep 0); its event is built
    only for a subscriber that needs it."""

    def missed_previous(self, subscriber: Connection) -> bool:
        """Whether ``subscriber`` may have had the step before neither live nor by replay:
        that step's read of the subscribers missed it, and its replay is not recorded or
        stopped just before that step."""
        if self.previous is None or subscriber.connection_id in self.previous.notified:
            return False
        through = subscriber.replayed_through
        return through is None or through == self.previous.seq - 1

    def after_commit(self) -> Audience:
        """The same, with the subscribers read at publish time instead."""
        return replace(self, subscribers=None)


class Notifier(Protocol):
    """Pushes run events to subscribers. Best effort: implementations never raise.

    The service publishes a step's events *after* committing the step and *before*
    dispatching the next hop, so a subscriber sees a run's events in step order. Every step
    reaches every subscriber live, by replay, or both (subscribers dedupe by ``seq``), by
    the rule of :class:`Audience`: ``publish`` posts ``audience.previous`` first to the
    subscribers that may have missed it, and reads the subscribers itself when the audience
    has none.
    """

    def publish(
        self, run_id: str, events: list[dict[str, Any]], audience: Audience | None = None
    ) -> None: ...


class NullNotifier:
    def publish(
        self, run_id: str, events: list[dict[str, Any]], audience: Audience | None = None
    ) -> None:
        return None
