"""The run protocol: every task of a run committed exactly once, every superstep closed once,
no hop trusted, no run stranded. One kernel for every graph shape.

A run advances in supersteps (:mod:`engine.superstep`). Each task of superstep k travels as
one *hop* (an SQS message or an asynchronous self-invocation), delivered at least once. A hop
is a request, never an authority: it names a run, a superstep and a task, and the worker
checks every word of it against the run's own records (the *slot check*) before it runs
anything. The state, the graph, the step limit and the plan all come from those records.

Every task, whatever the graph's shape, goes through the same steps::

    worker A (delivery d1)                         store
    ---------------------------------------------------------------------------------
    [recheck?] read its slot ----------------------> taken? -> after_conflict (below)
    slot check: one query from STEP#k-1 (k=0: the run's header) through the subscribers
                                          -----> stale? -> drop, change nothing
         stale: the run is unknown or not running, of another graph, routed elsewhere,
         already closed or cancelled at slot k (STEP#k written), or the task is not one
         the run's plan holds. Graph and step limit come from the records (STEP#k-1 carries
         them, copied down from the header), the state from STEP#k-1 (or the input)
    run the tool (at least once per task): one outcome, ok or failed, with its updates
         (1) crash here: nothing written; the hop is redelivered, runs the tool again

    a superstep of ONE task (every step of a chain) closes in place:
    commit STEP#k (merged updates, state, what runs next), conditional on "slot empty"
                                          -----> exactly one writer wins
         (2) crash here: the redelivered hop (same delivery id d1) finds STEP#k taken by
             d1 and sends what it never sent; with no redelivery (a request that died), the
             sweeper does (below)

    a superstep of SEVERAL tasks commits a task record, then closes once:
    commit TASK#k#t, conditional on "slot empty"
         (4) crash here: the redelivery finds its task slot taken by itself and goes on
    a windowed map: dispatch its item t+window (the next one waiting), and stop there
    fan-in: read the superstep's tasks (or, when wide, their count first)
        fewer than planned -> done: a later task will close
        all of them        -> merge (reducers, in task order), route, and
    commit STEP#k, conditional on "slot empty" ----> exactly one closer wins
         (5) crash here: as (2)

    then, for either:
    publish events (best effort; before the dispatch, so that a subscriber sees one run's
         events in step order; see engine.ports.Audience)
    dispatch superstep k+1's first chunk of hops (the outbox: STEP#k's successors)
         (3) crash here: as (2); a hop may now exist twice, and the copy that loses its
             commit is dropped
    acknowledge

    after_conflict: the slot taken by *this* delivery -> finish its follow-up (recovery);
                    taken by another delivery     -> drop: that worker owns the follow-up.

**The outbox.** A committed step record names what runs next (its successors, on its state):
the write that commits a step records what it dispatches. Whoever finds it undispatched
sends it: the redelivery of the hop that committed it, or the **sweeper**
(:meth:`HopProtocol.sweep`), which every minute re-sends the hops of a running run whose
open superstep made no progress for longer than the lease (a schedule on AWS, a timer on
the local stack). A run therefore never stays ``running`` once its last hop is gone.

**Wide maps.** A map never has more than ``map_window`` items in flight: the first superstep
of a request dispatches at most that first chunk, and each item that commits dispatches the
one ``window`` places after it (a capped map's ``max_concurrency`` narrows the window). So a
request answers at once, whatever the map's width; a wide map does not fill the queue ahead
of other runs' hops; and a superstep with many tasks counts them, so that its fan-in is read
once. A step record keeps at most ``MAX_TASK_SUMMARIES`` (:mod:`engine.step_records`) of its
tasks' summaries (each task has its own record), so a superstep of 100,000 tasks closes in
one item. A superstep of
more than ``fold_above`` tasks closes by a fold over several hops, a page of its task
records a hop (:mod:`engine.fold`, which draws its crash windows).

**Cancel** commits a ``cancelled`` step into the open slot k: every later task of superstep k
finds STEP#k written in its slot check and starts nothing.

**Subgraphs.** A subgraph node's hop starts the task's child run and commits nothing
(``waiting``); the child's end commits the task from outside through :meth:`finish_task`, the
same conditional commit and close. The hooks (``self.subgraphs``: entering a child, telling a
parent when a run ends, the sweeper's and the dead letters' view of a waiting task) are
:mod:`engine.subgraphs`.

**Dead letters** fail a run only for the live task of a live slot, once that task has had
time to die (the slot open for longer than the lease) and has not committed: a forged or
duplicate letter for a task that runs or ran changes nothing (:meth:`HopProtocol.fail`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

from engine.deadlines import check_time_for
from engine.errors import (
    ConflictError,
    GraphNotFound,
    MapTooWide,
    RetryLater,
    RunNotFound,
    StepConflict,
)
from engine.events import run_event, step_event
from engine.fold import FOLD_ABOVE, FOLD_PAGE, Folds
from engine.graph import END, Graph
from engine.history import redriven_attempts
from engine.lifecycle import accepts_hops
from engine.map_quota import check_map_width
from engine.pauses import Pauses
from engine.ports import (
    Audience,
    Clock,
    Hop,
    Notifier,
    NullNotifier,
    RunEnd,
    RunRecord,
    RunStore,
    StepQueue,
    StepRecord,
    TaskRecord,
)
from engine.records import record
from engine.reducers import ReducerError
from engine.retries import Retries
from engine.retry_policy import COMMIT_MARGIN_S
from engine.step_records import close_record
from engine.subgraphs import Subgraphs
from engine.superstep import (
    NO_JOINS,
    Closed,
    Joins,
    Plan,
    Task,
    TaskResult,
    close_superstep,
    plan_of,
    run_task,
)
from engine.sweeper import Sweeper
from engine.timers import Timers
from engine.tools import Send, ToolContext, Toolkit

NOBODY_YET = Audience()
"""No subscribers read yet: the notifier reads them when it publishes."""

COUNTED_FAN_IN_ABOVE = 256
"""Default of :attr:`ProtocolConfig.counted_fan_in_above` (:meth:`HopProtocol._counted`)."""

MAP_WINDOW = 100
"""Default of :attr:`ProtocolConfig.map_window`: a map's items in flight at once. A hundred
hops are ten SendMessageBatch calls, well inside a request's time; more would let one wide
map fill the shared queue ahead of every other run's hops."""

LEASE_SECONDS = 60.0
"""Default of :attr:`ProtocolConfig.lease_s`: twice the worker's function timeout."""

HopResult = Literal[
    "committed", "finished", "duplicate", "recovered", "stale", "retrying", "waiting", "folded"
]
"""``waiting``: the hop started a subgraph's child run (the child's end commits its task),
or came before its time (a retry, a wait node) and was held again. ``folded``: the hop folded
a page of a wide superstep's close and sent the next fold hop (:mod:`engine.fold`)."""


@record
class Origin:
    """Where a superstep starts, as the run's own records say: the state before it, its joins,
    its planned tasks, the run's graph and step limit, when the slot opened, and who gets its
    events (read with it, in the same request)."""

    state: dict[str, Any]
    joins: Joins
    planned: Plan
    graph_id: str
    max_steps: int
    opened_at: float
    audience: Audience = NOBODY_YET
    deferred: tuple[str, ...] = ()
    """Deferred nodes reached and waiting for nothing else to be left to run."""
    breakpoints: dict[str, list[str]] | None = None
    """The run's own breakpoints, as its records carry them (engine/pauses.py)."""
    redriven: int = 0
    """Attempts its tasks made before a redrive ran them again (engine/history.py)."""

    @property
    def parallel(self) -> bool:
        return self.planned.parallel


@dataclass(frozen=True, slots=True)
class ProtocolConfig:
    state_limit_bytes: int | None
    """``None``: no size check (the in-process runner's default)."""
    counted_fan_in_above: int = COUNTED_FAN_IN_ABOVE
    """A superstep whose fan-in reads would cost more than this many readers reading every
    task keeps a count instead (:meth:`HopProtocol._counted`)."""
    map_window: int = MAP_WINDOW
    """A map's items in flight at once (a request dispatches at most this many)."""
    lease_s: float = LEASE_SECONDS
    """How long a live hop may take: a slot open for longer without progress is swept, and
    only then may a dead letter fail its task."""
    max_map_width: int = 0
    """The ``map_width`` quota: a superstep planned wider fails its run (0: no limit;
    :mod:`engine.map_quota`)."""
    sweeper_delays: bool = False
    """The carrier cannot hold a hop (self-invocation): the sweeper sends retries when due
    (:mod:`engine.retries`)."""
    fold_above: int = FOLD_ABOVE
    """A superstep of more tasks closes by a fold over several hops (:mod:`engine.fold`);
    its tasks count their commits."""
    fold_page: int = FOLD_PAGE
    """Task records a fold hop reads (:mod:`engine.fold`)."""


class HopProtocol:
    """Applies hops (:meth:`process`), starts runs' first superstep (:meth:`start`), fails
    dead-lettered hops (:meth:`fail`) and re-sends stranded ones (:meth:`sweep`), written
    against the ports."""

    def __init__(
        self,
        store: RunStore,
        queue: StepQueue,
        tools: Toolkit,
        notifier: Notifier,
        clock: Clock,
        config: ProtocolConfig,
        graphs: Callable[[str], Graph],
    ) -> None:
        self.store = store
        self.queue = queue
        self.tools = tools
        self.notifier = notifier
        self.clock = clock
        self.config = config
        self.graphs = graphs
        self.subgraphs = Subgraphs(self)
        self.retries = Retries(store, queue, clock, lease_s=config.lease_s,
                               sweeper_delays=config.sweeper_delays)  # fmt: skip
        self.timers = Timers(queue, clock, lease_s=config.lease_s,
                             sweeper_delays=config.sweeper_delays)  # fmt: skip
        self.sweeper = Sweeper(self)
        self.pauses = Pauses(self)
        self.folds = Folds(self)

    # -- starting ----------------------------------------------------------------------------
    def start(self, run: RunRecord, *, recheck: bool) -> None:
        """Dispatch the first chunk of superstep 0. Raises ReducerError if the entry maps over
        something that is not a list; a map over an empty list ends the run at once."""
        graph = self.graphs(run.graph_id)
        planned = plan_of(graph, (graph.entry,), run.input)
        if not planned:
            self._complete_empty(run, graph)
            return
        self._dispatch(run.run_id, run.graph_id, 0, graph, planned, recheck=recheck)

    def _complete_empty(self, run: RunRecord, graph: Graph) -> None:
        step = StepRecord(
            run_id=run.run_id, seq=0, node=graph.entry, tool=graph.nodes[graph.entry].tool,
            status="ok", updates={}, state=run.input, next_node=END, started_at=self.clock(),
            duration_ms=0.0, run_status="completed", graph_id=run.graph_id,
            max_steps=run.max_steps,
        )  # fmt: skip
        try:
            self.store.commit_step(step, RunEnd("completed"))
        except (StepConflict, ConflictError):
            return
        self._publish(step, RunEnd("completed"), NOBODY_YET)
        self.subgraphs.ended(run.run_id)

    # -- one hop -----------------------------------------------------------------------------
    def process(self, hop: Hop, delivery_id: str, attempt: int = 1) -> HopResult:
        """Apply one hop: check it, run its task, commit it exactly once, close, route on."""
        if hop.fold:  # the close of a wide superstep, going on (engine/fold.py)
            return self.folds.hop(hop, delivery_id)
        graph = self._graph_of(hop)
        if graph is None:
            return "stale"
        suspect = hop.recheck or attempt > 1
        if suspect:
            taken = self._taken_by(hop)
            if taken is not None:
                return self._after_conflict(graph, hop, taken, delivery_id)
        if hop.attempt > attempt:  # a retry: the task's attempt (engine/retries.py)
            attempt = hop.attempt
        origin = self._origin(hop, graph)
        if origin is None:
            # Stale, or its slot is taken: by an earlier attempt of this very delivery, maybe
            # (a retried invocation that does not count as a redelivery) that died before
            # finishing its follow-up. One more read, on this path only.
            taken = self._taken_by(hop)
            if taken is not None:
                return self._after_conflict(graph, hop, taken, delivery_id)
            return "stale"
        if graph.nodes[hop.node].subgraph is not None:  # its child run does the work
            return self.subgraphs.enter(graph, hop, origin)
        attempt += origin.redriven  # a redriven task goes on from its failed attempt
        started = self.clock()
        result = self._outcome(graph, hop, origin, delivery_id, attempt, suspect=suspect)
        if isinstance(result, str):  # nothing to commit now: it waits, or is held again
            return result
        if result.error is not None:  # retried (only its attempt committed), routed, failed
            outcome = self.retries.after_failure(graph, hop, result, started, delivery_id)
            if isinstance(outcome, str):
                return outcome
            result = outcome
        if not origin.planned.parallel:
            return self._close([result], graph, hop, origin, started, delivery_id, attempt)
        return self._commit_task(graph, hop, origin, result, started, delivery_id, attempt)

    def _outcome(
        self, graph: Graph, hop: Hop, origin: Origin, delivery_id: str, attempt: int, *,
        suspect: bool,
    ) -> TaskResult | HopResult:  # fmt: skip
        """The task's result: its tool's, or, for a task that paused and was answered, what
        it held with the answer (engine/pauses.py); or why nothing is committed now (it waits
        for an answer, a retry or a wait is held until its time)."""
        if not suspect and hop.attempt == 1 and _unhooked(graph, hop.node, origin):
            # A first delivery of a node that declares no pause, wait or breakpoint: no hook
            # acts on it (each would say so, asked); only a tool's own question does.
            result = self._run(graph, hop, origin, attempt)
            if result.asked is None:
                return result
        else:
            early = self._before_run(graph, hop, origin, delivery_id, suspect=suspect)
            if early is not None:
                return early
            result = self._run(graph, hop, origin, attempt)
        asks = self.pauses.after_run(graph, hop, origin, result, delivery_id)
        return result if asks is None else asks

    def _before_run(
        self, graph: Graph, hop: Hop, origin: Origin, delivery_id: str, *, suspect: bool
    ) -> TaskResult | HopResult | None:
        """What the hooks do before the tool runs: ``None`` to run it; else an answered
        pause's result, or why nothing runs now (:meth:`_outcome`)."""
        paused = self.pauses.before_run(graph, hop, origin, delivery_id, suspect=suspect)
        if paused is not None:
            return paused
        early: HopResult | None = self.retries.before_run(graph, hop, delivery_id,
                                                          suspect=suspect)  # fmt: skip
        return early or self.timers.before_run(graph, hop, origin.state, origin.opened_at)

    def finish_task(
        self, hop: Hop, result_of: Callable[[Graph, Origin], TaskResult], delivery_id: str,
        started: float | None = None,
    ) -> HopResult:  # fmt: skip
        """Commit a task whose work was done outside a hop (a subgraph's child run), as its
        hop would: slot check, one conditional commit, close, route on; a failure goes
        through its node's retry and error route as a tool's does. A second call with the
        same ``delivery_id`` commits nothing and finishes what the first left undone.
        ``started``: when that work started (default: now)."""
        graph = self._graph_of(hop)
        if graph is None:
            return "stale"
        taken = self._taken_by(hop)
        if taken is not None:
            return self._after_conflict(graph, hop, taken, delivery_id)
        origin = self._origin(hop, graph)
        if origin is None:
            return "stale"
        started = self.clock() if started is None else started
        result = result_of(graph, origin)
        if not result.ok:  # retried (a new child), routed, or failed (engine/retries.py)
            outcome = self.retries.after_failure(graph, hop, result, started, delivery_id)
            if isinstance(outcome, str):
                return outcome
            result = outcome
        if not origin.parallel:
            return self._close([result], graph, hop, origin, started, delivery_id, hop.attempt)
        return self._commit_task(graph, hop, origin, result, started, delivery_id, hop.attempt)

    def _run(self, graph: Graph, hop: Hop, origin: Origin, attempt: int) -> TaskResult:
        node = graph.nodes[hop.node]
        if node.failure.timeout_s is not None:  # else there is nothing to check
            check_time_for(f"task {hop.task_key!r}", node.failure.timeout_s, COMMIT_MARGIN_S)
        ctx = ToolContext(hop.run_id, hop.node, hop.seq, attempt, node.settings, hop.index)
        task = Task(hop.node, hop.index)
        return run_task(graph, self.tools, task, origin.state, ctx, origin.planned)

    def _taken_by(self, hop: Hop) -> StepRecord | TaskRecord | None:
        """What already fills the hop's slot (its task's, or its superstep's)."""
        if hop.parallel:
            return self.store.get_task(hop.run_id, hop.seq, hop.node, hop.index)
        return self.store.get_step(hop.run_id, hop.seq)

    def _commit_task(
        self, graph: Graph, hop: Hop, origin: Origin, result: TaskResult, started: float,
        delivery_id: str, attempt: int,
    ) -> HopResult:  # fmt: skip
        record = TaskRecord(
            run_id=hop.run_id, seq=hop.seq, node=hop.node, index=hop.index, tool=result.tool,
            status="ok" if result.ok else "failed", updates=result.updates,
            targets=result.targets, started_at=started, duration_ms=result.duration_ms,
            error=result.error, attempt=attempt, committed_by=delivery_id,
            sends=tuple(s.to_dict() for s in result.sends), child_run_id=result.child_run_id,
        )  # fmt: skip
        try:
            self.store.commit_task(record, counted=self._counted(graph, origin))
        except StepConflict:
            taken = self.store.get_task(hop.run_id, hop.seq, hop.node, hop.index)
            if taken is None:
                return "stale"
            return self._after_conflict(graph, hop, taken, delivery_id)
        return self._after_task(graph, hop, origin, delivery_id, recheck=False)

    def _after_task(
        self, graph: Graph, hop: Hop, origin: Origin, delivery_id: str, *, recheck: bool
    ) -> HopResult:
        """What a committed task does next: start the map item waiting behind it, and close
        the superstep if it may be the last."""
        self._next_item(graph, hop, origin, recheck=recheck)
        if not self._may_close(graph, Task(hop.node, hop.index), origin.planned):
            return "committed"
        return self._fan_in(graph, hop, origin, delivery_id)

    def _next_item(self, graph: Graph, hop: Hop, origin: Origin, *, recheck: bool) -> None:
        """A map runs ``window`` items at once: each one that commits starts the item
        ``window`` places after it."""
        window = self._window(graph, hop.node)
        if window is None or hop.index is None:
            return
        following = Task(hop.node, hop.index + window)
        if following in origin.planned:
            # its own first attempt, whatever attempt this item was at
            self.queue.dispatch(replace(hop, index=following.index, recheck=recheck, attempt=1))

    def _fan_in(self, graph: Graph, hop: Hop, origin: Origin, delivery_id: str) -> HopResult:
        """Close the superstep if every planned task has committed."""
        counted = self._counted(graph, origin)
        if counted and self.store.count_tasks(hop.run_id, hop.seq) < len(origin.planned):
            return self.pauses.after_fan_in(graph, hop, origin)
        if counted and self.folds.wide(origin.planned):  # a fold over several hops
            return self.folds.close(graph, hop, origin, delivery_id)
        tasks = self.store.list_tasks(hop.run_id, hop.seq)
        if len(tasks) < len(origin.planned):
            return self.pauses.after_fan_in(graph, hop, origin)
        results = [
            TaskResult(Task(t.node, t.index), t.tool, t.updates, t.targets, t.duration_ms,
                       t.error, tuple(Send.from_dict(s) for s in t.sends))
            for t in tasks
        ]  # fmt: skip
        started = min(t.started_at for t in tasks)
        return self._close(results, graph, hop, origin, started, delivery_id, 1, tasks)

    # -- closing a superstep (one close for every shape) -------------------------------------
    def _close(
        self, results: list[TaskResult], graph: Graph, hop: Hop, origin: Origin,
        started: float, delivery_id: str, attempt: int, tasks: list[TaskRecord] | None = None,
    ) -> HopResult:  # fmt: skip
        closed = close_superstep(
            graph, origin.state, origin.joins, results, hop.seq, origin.max_steps,
            self.config.state_limit_bytes, origin.deferred,
        )  # fmt: skip
        closed, planned = self._planned(graph, closed)
        step = close_record(hop, origin, closed, results, started, attempt, delivery_id, tasks)
        return self._commit_close(graph, hop, step, closed.end, delivery_id, origin.audience,
                                  planned)  # fmt: skip

    def _planned(self, graph: Graph, closed: Closed) -> tuple[Closed, Plan | None]:
        """``closed`` with the next superstep planned (``None`` when the run ends); planning
        problems (a map over a non-list, a plan over the ``map_width`` quota) and an empty
        plan end the run here."""
        if closed.end is not None:
            return closed, None
        try:
            planned = plan_of(graph, closed.next_nodes, closed.state, closed.sends)
            if self.config.max_map_width:  # 0: no quota (in process)
                check_map_width(planned, self.config.max_map_width)
        except (ReducerError, MapTooWide) as exc:
            return replace(closed, next_nodes=(), end=RunEnd("failed", str(exc))), None
        if not planned.count:
            return replace(closed, next_nodes=(), end=RunEnd("completed")), None
        return closed, planned

    def _commit_close(
        self, graph: Graph, hop: Hop, step: StepRecord, end: RunEnd | None, delivery_id: str,
        audience: Audience, planned: Plan | None,
    ) -> HopResult:  # fmt: skip
        if audience.subscribers:
            step = replace(step, notified=tuple(c.connection_id for c in audience.subscribers))
        try:
            self.store.commit_step(step, end)
        except StepConflict:
            taken = self.store.get_step(hop.run_id, hop.seq)
            if taken is None:  # the run was already final: nothing more to do for it
                return "stale"
            return self._after_conflict(graph, hop, taken, delivery_id)
        self._publish(step, end, audience)
        if end is None:
            if planned is None:
                self._dispatch_after(graph, hop.run_id, step, recheck=False)
            else:  # planned by this close, from the record it committed: its outbox
                self._dispatch(hop.run_id, step.graph_id, hop.seq + 1, graph, planned,
                               recheck=False)  # fmt: skip
            return "committed"
        self.subgraphs.ended(hop.run_id)
        return "finished"

    def _after_conflict(
        self, graph: Graph, hop: Hop, taken: StepRecord | TaskRecord, delivery_id: str
    ) -> HopResult:
        if taken.committed_by != delivery_id or taken.status == "cancelled":
            return "duplicate"
        if isinstance(taken, TaskRecord):
            # Our earlier attempt committed the task, then died: finish what it left undone.
            origin = self._origin(hop, graph)
            if origin is None:  # the superstep is closed: by our attempt, maybe
                closed = self.store.get_step(hop.run_id, hop.seq)
                if closed is None or closed.committed_by != delivery_id:
                    return "stale"
                return self._after_conflict(graph, hop, closed, delivery_id)
            result = self._after_task(graph, hop, origin, delivery_id, recheck=True)
            return "recovered" if result in ("committed", "finished") else result
        # Our earlier attempt closed the superstep, then died before it published or
        # dispatched: finish its work (events are at least once; subscribers dedupe by seq).
        audience = self._audience_after(hop)
        if taken.run_status != "running":
            end = RunEnd(taken.run_status, self.store.get_run(hop.run_id).error)
            self._publish(taken, end, audience)
            self.subgraphs.ended(hop.run_id)
            return "recovered"
        self._publish(taken, None, audience)
        self._dispatch_after(graph, hop.run_id, taken, recheck=True)
        return "recovered"

    def _audience_after(self, hop: Hop) -> Audience:
        slot = self.store.read_slot(hop.run_id, hop.seq)
        return Audience(slot.subscribers, slot.previous).after_commit()

    # -- dispatching (the outbox) ------------------------------------------------------------
    def dispatch_after(self, step: StepRecord, *, recheck: bool) -> None:
        """The outbox of a command's entry (a fork's first step, a redrive): send the first
        chunk of the superstep after it, as a close does. A command that died before this
        is finished by the sweeper, or by its own retry (``recheck``)."""
        graph = self.graphs(step.graph_id or self.store.get_run(step.run_id).graph_id)
        self._dispatch_after(graph, step.run_id, step, recheck=recheck)

    def _dispatch_after(
        self, graph: Graph, run_id: str, step: StepRecord, *, recheck: bool
    ) -> None:
        """Dispatch the first chunk of the superstep after ``step`` (its outbox), planned from
        the record (a close that has just planned it dispatches it itself)."""
        planned = plan_of(graph, step.successors, step.state, step.sends)
        graph_id = step.graph_id or self.store.get_run(run_id).graph_id
        self._dispatch(run_id, graph_id, step.seq + 1, graph, planned, recheck=recheck)

    def _dispatch(
        self, run_id: str, graph_id: str, seq: int, graph: Graph, planned: Plan, *,
        recheck: bool, skip: Callable[[Task], bool] | None = None,
    ) -> int:  # fmt: skip
        """Send the hops of ``planned`` that start now (a map's first window); returns how
        many. Hops carry no state: the slot check reads it anyway."""
        if planned.count == 1 and planned.plain and skip is None:  # one node (a chain step)
            self.queue.dispatch(Hop(run_id, graph_id, seq, planned.nodes[0], recheck))
            return 1
        hops = self._hops(run_id, graph_id, seq, graph, planned, recheck=recheck, skip=skip)
        if len(hops) == 1:
            self.queue.dispatch(hops[0])
        elif hops:
            self.queue.dispatch_batch(hops)
        return len(hops)

    def _hops(
        self, run_id: str, graph_id: str, seq: int, graph: Graph, planned: Plan, *,
        recheck: bool = True, skip: Callable[[Task], bool] | None = None,
    ) -> list[Hop]:  # fmt: skip
        """The hops of ``planned``'s first chunk."""
        parallel = planned.parallel
        if planned.plain and skip is None:  # one hop per node (every chain step)
            return [Hop(run_id, graph_id, seq, node, recheck, None, parallel)
                    for node in planned.nodes]  # fmt: skip
        return [
            Hop(run_id, graph_id, seq, t.node, recheck=recheck, index=t.index, parallel=parallel)
            for t in self._first_chunk(graph, planned)
            if skip is None or not skip(t)
        ]

    def _first_chunk(self, graph: Graph, planned: Plan) -> Iterable[Task]:
        """The plan's tasks that start at once: every plain node, a map's first window (the
        tasks due before any has committed, :meth:`_due`)."""
        return self._due(graph, planned, [])

    def _window(self, graph: Graph, node: str) -> int | None:
        """A map node's items in flight at once (``None`` for a plain node)."""
        spec = graph.nodes[node].map
        if spec is None:
            return None
        cap = spec.max_concurrency
        return self.config.map_window if cap is None else min(cap, self.config.map_window)

    def _may_close(self, graph: Graph, task: Task, planned: Plan) -> bool:
        """Whether ``task`` can be its superstep's last, and so worth the fan-in read: only
        the last ``window`` items of a map can (:meth:`_closing`)."""
        size = planned.sizes.get(task.node)
        if size is None or task.index is None:
            return True
        return task.index >= size - self._closing(graph, task.node, size)

    def _closing(self, graph: Graph, node: str, size: int | None) -> int:
        """How many of ``node``'s tasks may close the superstep: a plain node's one task, the
        last ``window`` items of a map. Each of the others started the item ``window`` places
        after it, which commits later."""
        if size is None:
            return 1
        window = self._window(graph, node)
        return size if window is None else min(size, window)

    def _counted(self, graph: Graph, origin: Origin) -> bool:
        """Whether the superstep's tasks count their commits, so that each reads one small
        count rather than every task committed so far.

        Each read of the fan-in costs what it returns: r readers of a superstep of n tasks
        read up to r * n task records. Counting makes each commit a transaction of two items
        (4 write units instead of 1) plus one 1-unit read, and only the task that sees every
        task counted reads them all. With task records of about 0.5 KB, the reads cost more
        than that above about 256 * 256 records read (an uncapped map of 256 items, or a
        windowed map of 100 readers over 656 items). Every task of the superstep decides the
        same way: from its plan."""
        return self._counted_plan(graph, origin.planned)

    def _counted_plan(self, graph: Graph, planned: Plan) -> bool:
        """:meth:`_counted` of the superstep ``planned``; a superstep that closes by a fold
        (wider than ``fold_above``) always counts: its count says when to start folding."""
        readers = len(planned.sends)  # each item sent is a task of its own, unwindowed
        readers += sum(self._closing(graph, n, s) for n, s in planned.sizes.items())
        above = self.config.counted_fan_in_above
        return readers * len(planned) > above * above or len(planned) > self.config.fold_above

    # -- the slot check ----------------------------------------------------------------------
    def _origin(self, hop: Hop, graph: Graph) -> Origin | None:
        """Where the hop's superstep starts, as the run's records say, or ``None`` if the hop
        is not one the run would send: unknown or final run, another graph, slot already
        closed or cancelled, a task the plan does not hold, or a different shape."""
        slot = self.store.read_slot(hop.run_id, hop.seq)
        if slot.taken:
            return None
        if hop.seq == 0:
            found = _origin_of_run(slot.run, graph)
        else:
            found = self._origin_of_step(slot.previous, hop.run_id)
        if found is None:
            return None
        state, nodes, joins, graph_id, max_steps, opened, breakpoints = found
        previous = slot.previous if hop.seq else None
        sends = previous.sends if previous is not None else ()
        deferred = previous.deferred if previous is not None else ()
        if graph_id != hop.graph_id:
            return None
        # A plan the graph cached was made from its own nodes: those need no second look.
        planned: Plan | None = graph.plans.get(nodes) if not sends else None
        if planned is None or deferred:
            if not _known(graph, nodes, deferred, sends):
                return None
            try:
                planned = plan_of(graph, nodes, state, sends)
            except ReducerError:
                return None
        if not planned.holds(hop.node, hop.index) or planned.parallel != hop.parallel:
            return None
        audience = Audience(slot.subscribers, slot.previous)
        return Origin(state, joins, planned, graph_id, max_steps, opened, audience, deferred,
                      breakpoints, redriven_attempts(previous))  # fmt: skip

    def _origin_of_step(self, previous: StepRecord | None, run_id: str) -> _Found | None:
        if previous is None or not accepts_hops(previous.run_status):
            return None
        graph_id, max_steps = previous.graph_id, previous.max_steps
        breakpoints = previous.breakpoints
        if not graph_id or not max_steps:  # a step committed before steps carried them
            try:
                run = self.store.get_run(run_id)
            except RunNotFound:
                return None
            graph_id, max_steps, breakpoints = run.graph_id, run.max_steps, run.breakpoints
        joins = {k: frozenset(v) for k, v in previous.joins.items()} if previous.joins else NO_JOINS
        return (previous.state, previous.successors, joins, graph_id, max_steps,
                previous.ended_at, breakpoints)  # fmt: skip

    # -- events ------------------------------------------------------------------------------
    def _publish(self, step: StepRecord, end: RunEnd | None, audience: Audience) -> None:
        """The step's events, to the subscribers read with its slot; a run's last step has no
        next publisher to make up for a subscriber that came meanwhile, so it reads them
        after its commit (:class:`~engine.ports.Audience`)."""
        if isinstance(self.notifier, NullNotifier):  # nobody listens: build no events
            return
        if end is not None:
            audience = audience.after_commit()
        now = self.clock()
        events = [step_event(step, now)]
        if end is not None:
            state = step.state if end.status == "completed" else None
            events.append(
                run_event(step.run_id, end.status, now, state=state, reason=end.error,
                          steps=step.seq + 1)
            )  # fmt: skip
        try:
            self.notifier.publish(step.run_id, events, audience)
        except Exception:  # progress is best effort: it never fails a committed step
            return

    # -- dead letters and the sweeper (engine/sweeper.py) --------------------------------------
    def fail(self, hop: Hop, reason: str, *, by_worker: bool = False) -> bool:
        """Fail the run because ``hop`` is being dead-lettered: a failed step record in its
        superstep's slot. True if this call ended the run; False if it changed nothing.

        A letter is a request too: it fails the run only if its task is the live one (the
        run is at that slot, and the plan holds the task), has not committed, and has had
        time to die: its slot has been open for longer than the lease, since AWS gives up on
        a hop only after its receives or retries ran out. A letter that comes earlier raises
        RetryLater, so that it is looked at again once the lease has passed. ``by_worker``:
        the worker that just failed the task's last allowed delivery, which knows it
        stopped."""
        if hop.fold:  # a fold hop runs no task: the sweeper goes on with its fold
            return False
        graph = self._graph_of(hop)
        origin = self._origin(hop, graph) if graph is not None else None
        if graph is None or origin is None:
            return False
        if hop.parallel and self.store.get_task(hop.run_id, hop.seq, hop.node, hop.index):
            return False
        if self.retries.pending(graph, hop):  # its next attempt is on its way: not dead
            return False
        if self.subgraphs.has_child(graph, hop):  # its task waits on a child run: not dead
            return False
        if not by_worker and self.clock() - origin.opened_at < self.config.lease_s:
            # Too early to tell: its task may still run. The letter comes back later (the
            # consumer reports it failed); by then the task committed, or it really stopped.
            raise RetryLater(f"step {hop.seq} may still run: its slot is younger than the lease")
        step = StepRecord(
            run_id=hop.run_id, seq=hop.seq, node=hop.task_key, tool=graph.nodes[hop.node].tool,
            status="failed", updates={}, state=origin.state, next_node=None,
            started_at=self.clock(), duration_ms=0.0, error=reason, run_status="failed",
            graph_id=origin.graph_id, max_steps=origin.max_steps,
        )  # fmt: skip
        try:
            self.store.commit_step(step, RunEnd("failed", reason))
        except (StepConflict, ConflictError):
            return False
        self._publish(step, RunEnd("failed", reason), origin.audience)  # read after it
        self.subgraphs.ended(hop.run_id)
        return True

    def sweep(self, run_id: str) -> int:
        """Re-send the hops of ``run_id``'s open superstep if it made no progress for longer
        than the lease; returns how many were sent (:mod:`engine.sweeper`)."""
        return self.sweeper.sweep(run_id)

    def _due(self, graph: Graph, planned: Plan, tasks: list[TaskRecord]) -> Iterable[Task]:
        """The tasks that should be in flight once ``tasks`` committed: each map's first
        ``committed + window`` items (each commit started one more), every plain node."""
        for node in planned.nodes:
            size = planned.sizes[node]
            if size is None:
                yield Task(node)
                continue
            committed = sum(1 for t in tasks if t.node == node)
            window = self._window(graph, node) or size
            yield from (Task(node, i) for i in range(min(size, committed + window)))
        yield from (Task(send.node, i) for i, send in enumerate(planned.sends))

    def _graph_of(self, hop: Hop) -> Graph | None:
        """The hop's graph if it has the hop's node; ``None`` for a hop no run could send."""
        try:
            graph = self.graphs(hop.graph_id)
        except GraphNotFound:
            return None
        return graph if hop.node in graph.nodes else None


_Found = tuple[dict[str, Any], tuple[str, ...], Joins, str, int, float, dict[str, list[str]] | None]
"""An origin's state, nodes, joins, graph id, step limit, opening time and breakpoints."""


def _known(
    graph: Graph, nodes: tuple[str, ...], deferred: tuple[str, ...],
    sends: tuple[dict[str, Any], ...],
) -> bool:  # fmt: skip
    """Whether every node a record names (to run next, deferred, sent an item) is the
    graph's."""
    known = graph.names
    return (
        known.issuperset(nodes)
        and known.issuperset(deferred)
        and (not sends or known.issuperset(s["node"] for s in sends))
    )


def _unhooked(graph: Graph, node: str, origin: Origin) -> bool:
    """Whether no hook acts on a first delivery of a task of ``node``: the graph's node has
    none (:attr:`~engine.graph.Graph.unhooked`), and the run sets no breakpoints of its own."""
    return node in graph.unhooked and not origin.breakpoints


def _origin_of_run(run: RunRecord | None, graph: Graph) -> _Found | None:
    if run is None or not accepts_hops(run.status):
        return None
    return (run.input, (graph.entry,), NO_JOINS, run.graph_id, run.max_steps, run.created_at,
            run.breakpoints)  # fmt: skip
