"""The run protocol: every hop of a run committed exactly once, every superstep closed once.

A run advances in supersteps (:mod:`engine.superstep`). Each task of superstep k travels as
one *hop* (an SQS message or an asynchronous self-invocation), delivered at least once.

A superstep of ONE task (every step of a chain) is committed by one conditional write of its
step record, ``RUN#r/STEP#k``, which is both the task and the superstep's close::

    worker A (delivery d1)                         store
    ---------------------------------------------------------------------------------
    [recheck?] read STEP#k -----------------------> taken? -> after_conflict (below)
    slot check: one query of STEP#k-1 (k=0: the run's header) and the run's subscribers
                                          -----> stray? -> drop, change nothing
         (in the background while the tool runs when the state travelled inline;
          first, as the state's source, when it did not)
    run the tool (at least once per task)
         (1) crash here: nothing written; the hop is redelivered, runs the tool again
    wait for the slot check ------------------------> stray? -> drop, change nothing
    commit STEP#k, conditional on "slot empty" -----> exactly one writer wins
         (2) crash here: the redelivered hop (same delivery id d1) finds STEP#k taken by
             d1 and re-dispatches what it never sent
    publish events (best effort, never fails the step; before the dispatch, so that
         a subscriber sees one run's events in step order; to the subscribers read with
         the slot, after step k-1's event to any who may have missed it, see
         engine.ports.Audience; the run's last step reads them after its commit)
    dispatch superstep k+1's hops (one; or a batch for a fan-out; none if the run ended)
         (3) crash here: as (2); a hop may now exist twice, and the copy that loses its
             commit is dropped
    acknowledge

A superstep of SEVERAL tasks (a fan-out, a map, a join with other work) writes one task
record per task, ``RUN#r/TASK#k#node#index``, and closes once::

    slot check, run the tool, commit TASK#k#t, conditional on "slot empty"
         (4) crash here: the redelivery finds its task slot taken by itself and goes on
    a capped map: dispatch its item t+cap (the next one waiting), and stop there: the item
         it started commits later, so this one cannot be the last
    fan-in: read every task of superstep k (one query)
        fewer than planned -> done: a later task will close
        all of them        -> merge (reducers, in task order), route, and
      (a superstep with many readers, such as an uncapped map of hundreds of items, commits
       each task in one transaction with the superstep's count of committed tasks, and its
       fan-in reads that count first: fewer than planned -> done; every task of it counts
       or none does, so the count is never short of the tasks committed)
    commit STEP#k, conditional on "slot empty" ----> exactly one closer wins
         (5) crash here: the closer's redelivery finds its task taken by itself, reads the
             tasks again, loses the close to its own earlier commit and re-dispatches
    publish the superstep's event, dispatch superstep k+1's hops (as (3))

Two tasks that finish together both read the fan-in after their own commit; a strongly
consistent read sees every write completed before it, so at least the later one sees all
tasks and closes: no coordinator, no polling. Both may try; the conditional write decides.

    after_conflict: the slot taken by *this* delivery -> finish its follow-up (recovery);
                    taken by another delivery     -> drop: that worker owns the follow-up,
                    and if it crashes, its own redelivery recovers it.

A chain's step is then three requests in series (dispatch, receive, commit) and one read
beside its tool. The slot check lets a commit stay one conditional write and still require
a live run at that slot: a hop is stray (forged, or left over from a finished run) unless
STEP#k-1 is committed with its run still running and its successors plan this task (for
k=0: the run exists, runs, is of the hop's graph and the task is one of its entry's). Once
that holds, the run can only end or move on by writing STEP#k (a close, a cancel, a dead
letter), which makes a late task's close lose. Cancel takes the next free step slot; a
dead-lettered hop is failed into STEP#k (:meth:`HopProtocol.fail`).

What comes next fits this model without another redesign: a *pause* is a task that commits
a "waiting" task record and dispatches nothing (resume dispatches the hop that commits its
result); a *retry* re-dispatches the task's hop with an SQS delay (or a timer) and an attempt
count, never sleeping; a *fork* creates a run whose STEP#0 input is any closed superstep's
state; a *redrive* re-dispatches the failed superstep's tasks after rewriting nothing, into a
new run header generation.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import cache
from typing import Any, Literal

from engine.errors import ConflictError, GraphNotFound, StepConflict
from engine.events import run_event, step_event
from engine.graph import END, Graph
from engine.ports import (
    Audience,
    Clock,
    Hop,
    Notifier,
    RunEnd,
    RunRecord,
    RunStore,
    StepQueue,
    StepRecord,
    TaskRecord,
)
from engine.reducers import ReducerError
from engine.step import Limits, advance
from engine.superstep import (
    NO_JOINS,
    Closed,
    Joins,
    Plan,
    Task,
    TaskResult,
    close_superstep,
    plan_of,
    plan_tasks,
    run_task,
    state_size,
)
from engine.tools import Send, ToolContext, Toolkit

NOBODY_YET = Audience()
"""No subscribers read yet: the notifier reads them when it publishes."""

COUNTED_FAN_IN_ABOVE = 256
"""Default of :attr:`ProtocolConfig.counted_fan_in_above` (:meth:`HopProtocol._counted`)."""

HopResult = Literal["committed", "finished", "duplicate", "recovered", "stale"]


@cache
def _slot_checks() -> ThreadPoolExecutor:
    """Threads that read a hop's slot while its tool runs: one read each, and more threads
    than the hops a worker applies at once (the ten of an SQS batch; the local stack runs
    several invocations in one process), so that no read waits for a thread."""
    return ThreadPoolExecutor(max_workers=32, thread_name_prefix="slot-check")


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a superstep starts: the state before it, its joins, its planned tasks, and who
    gets its events (read with it, in the same request)."""

    state: dict[str, Any]
    joins: Joins
    planned: Plan
    audience: Audience = NOBODY_YET
    deferred: tuple[str, ...] = ()

    @property
    def parallel(self) -> bool:
        return len(self.planned) > 1


@dataclass(frozen=True, slots=True)
class ProtocolConfig:
    state_limit_bytes: int
    inline_state_bytes: int
    counted_fan_in_above: int = COUNTED_FAN_IN_ABOVE
    """A superstep whose tasks would read the fan-in more often than this keeps a count
    instead (:meth:`HopProtocol._counted`)."""


class HopProtocol:
    """Applies hops (:meth:`process`), starts runs' first superstep (:meth:`first_hops`) and
    fails dead-lettered hops (:meth:`fail`), written against the ports."""

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

    # -- starting ----------------------------------------------------------------------------
    def start(self, run: RunRecord, *, recheck: bool) -> None:
        """Dispatch the hops of superstep 0. Raises ReducerError if the entry maps over
        something that is not a list; a map over an empty list ends the run at once."""
        graph = self.graphs(run.graph_id)
        planned = plan_tasks(graph, (graph.entry,), run.input)
        if not planned:
            self._complete_empty(run, graph)
            return
        self._dispatch(run.run_id, run.graph_id, run.max_steps, 0, graph, planned, run.input,
                       recheck=recheck)  # fmt: skip

    def _complete_empty(self, run: RunRecord, graph: Graph) -> None:
        step = StepRecord(
            run_id=run.run_id, seq=0, node=graph.entry, tool=graph.nodes[graph.entry].tool,
            status="ok", updates={}, state=run.input, next_node=END, started_at=self.clock(),
            duration_ms=0.0, run_status="completed",
        )  # fmt: skip
        try:
            self.store.commit_step(step, RunEnd("completed"))
        except (StepConflict, ConflictError):
            return
        self._publish(step, RunEnd("completed"), NOBODY_YET)

    # -- one hop -----------------------------------------------------------------------------
    def process(self, hop: Hop, delivery_id: str, attempt: int = 1) -> HopResult:
        """Apply one hop: run its task, commit it exactly once, close and route onwards."""
        graph = self._graph_of(hop)
        if graph is None:
            return "stale"
        if hop.parallel:
            return self._process_task(graph, hop, delivery_id, attempt)
        if hop.recheck or attempt > 1:
            taken = self.store.get_step(hop.run_id, hop.seq)
            if taken is not None:
                return self._after_conflict(graph, hop, taken, delivery_id)
        check = self._slot_check(hop)
        state = hop.state
        if state is None:  # it did not travel inline: the slot check is its source
            first = check.result()
            if first is None:
                return "stale"
            state = first.state
        ctx = ToolContext(hop.run_id, hop.node, hop.seq, attempt)
        # A chain's step needs nothing from the slot check until its commit; any other
        # superstep of one task carries its origin's joins into the close.
        step, end = self._single(graph, hop, state, None if graph.is_chain else check.result(), ctx)
        origin = check.result()
        if origin is None:
            return "stale"  # a stray or forged hop: its run is not at this slot
        return self._commit_close(graph, hop, replace(step, committed_by=delivery_id), end,
                                  delivery_id, origin.audience)  # fmt: skip

    def _slot_check(self, hop: Hop) -> Future[Origin | None]:
        """The hop's origin, read while its tool runs when its state travelled inline, and
        at once (a settled future) when it did not: then it is the state's source."""
        if hop.state is not None:
            return _slot_checks().submit(self._origin, hop)
        settled: Future[Origin | None] = Future()
        settled.set_result(self._origin(hop))
        return settled

    def _single(
        self, graph: Graph, hop: Hop, state: dict[str, Any], origin: Origin | None,
        ctx: ToolContext,
    ) -> tuple[StepRecord, RunEnd | None]:  # fmt: skip
        """Run a superstep of one task; its step record is the task and the close at once."""
        if graph.is_chain:
            limits = Limits(hop.max_steps, self.config.state_limit_bytes)
            outcome = advance(graph, self.tools, hop.node, state, ctx, limits, self.clock())
            return outcome.step, outcome.end
        if origin is None:  # stray: no joins to carry; the caller drops the result
            origin = Origin(state, NO_JOINS, Plan({}))
        started = self.clock()
        result = run_task(graph, self.tools, Task(hop.node, hop.index), state, ctx, origin.planned)
        closed, _ = self._closed(graph, origin, [result], hop)
        return self._close_record(hop, origin, closed, [result], started, ctx.attempt), closed.end

    # -- a task of a superstep of several ----------------------------------------------------
    def _process_task(self, graph: Graph, hop: Hop, delivery_id: str, attempt: int) -> HopResult:
        if hop.recheck or attempt > 1:
            taken = self.store.get_task(hop.run_id, hop.seq, hop.node, hop.index)
            if taken is not None:
                return self._after_task_conflict(graph, hop, taken, delivery_id)
        origin = self._origin(hop)
        if origin is None:
            return "stale"
        ctx = ToolContext(hop.run_id, hop.node, hop.seq, attempt)
        started = self.clock()
        task = Task(hop.node, hop.index)
        result = run_task(graph, self.tools, task, origin.state, ctx, origin.planned)
        record = TaskRecord(
            run_id=hop.run_id, seq=hop.seq, node=hop.node, index=hop.index, tool=result.tool,
            status="ok" if result.ok else "failed", updates=result.updates,
            targets=result.targets, started_at=started, duration_ms=result.duration_ms,
            error=result.error, attempt=attempt, committed_by=delivery_id,
            sends=tuple(s.to_dict() for s in result.sends),
        )  # fmt: skip
        try:
            self.store.commit_task(record, counted=self._counted(graph, origin))
        except StepConflict:
            taken = self.store.get_task(hop.run_id, hop.seq, hop.node, hop.index)
            if taken is None:
                return "stale"
            return self._after_task_conflict(graph, hop, taken, delivery_id)
        self._next_item(graph, hop, origin, recheck=False)
        if not _may_close(graph, Task(hop.node, hop.index), origin.planned):
            return "committed"
        return self._fan_in(graph, hop, origin, delivery_id)

    def _after_task_conflict(
        self, graph: Graph, hop: Hop, taken: TaskRecord, delivery_id: str
    ) -> HopResult:
        if taken.committed_by != delivery_id:
            return "duplicate"
        origin = self._origin(hop)
        if origin is None:
            return "stale"
        # Our earlier attempt committed the task, then died: finish what it left undone.
        self._next_item(graph, hop, origin, recheck=True)
        if not _may_close(graph, Task(hop.node, hop.index), origin.planned):
            return "recovered"
        result = self._fan_in(graph, hop, origin, delivery_id)
        return "recovered" if result in ("committed", "finished") else result

    def _next_item(self, graph: Graph, hop: Hop, origin: Origin, *, recheck: bool) -> None:
        """A capped map runs ``max_concurrency`` items at once: each one that commits starts
        the item ``cap`` places after it."""
        spec = graph.nodes[hop.node].map
        if spec is None or spec.max_concurrency is None or hop.index is None:
            return
        following = Task(hop.node, hop.index + spec.max_concurrency)
        if following in origin.planned:  # a task's hop carries no state (_dispatch)
            self.queue.dispatch(replace(hop, index=following.index, recheck=recheck, state=None))

    def _counted(self, graph: Graph, origin: Origin) -> bool:
        """Whether the superstep's tasks count their commits, so that each reads one small
        count rather than every task committed so far.

        Each read of the fan-in costs what it returns, so a superstep of n tasks that all
        read it (an uncapped map) reads about n * n / 2 task records: a map of a thousand
        items, half a million, seconds of a Lambda's time and of moto's. Counting makes each
        commit a transaction of two items (4 write units instead of 1) plus one 1-unit read,
        and only a task that sees every task counted reads them all. With task records of
        about 0.5 KB, the reads cost more than that above about 256 readers (a write unit is
        priced as five read units, and a strongly consistent read unit covers 4 KB), hence
        the default. Every task of the superstep decides the same way: from its plan."""
        return _readers(graph, origin.planned) > self.config.counted_fan_in_above

    def _fan_in(self, graph: Graph, hop: Hop, origin: Origin, delivery_id: str) -> HopResult:
        """Close the superstep if every planned task has committed."""
        counted = self._counted(graph, origin)
        if counted and self.store.count_tasks(hop.run_id, hop.seq) < len(origin.planned):
            return "committed"
        tasks = self.store.list_tasks(hop.run_id, hop.seq)
        if len(tasks) < len(origin.planned):
            return "committed"
        results = [
            TaskResult(Task(t.node, t.index), t.tool, t.updates, t.targets, t.duration_ms, t.error,
                       tuple(Send.from_dict(s) for s in t.sends))
            for t in tasks
        ]  # fmt: skip
        closed, _ = self._closed(graph, origin, results, hop)
        started = min(t.started_at for t in tasks)
        step = self._close_record(hop, origin, closed, results, started, 1, tasks)
        return self._commit_close(graph, hop, replace(step, committed_by=delivery_id),
                                  closed.end, delivery_id, origin.audience)  # fmt: skip

    # -- closing a superstep -----------------------------------------------------------------
    def _closed(
        self, graph: Graph, origin: Origin, results: list[TaskResult], hop: Hop
    ) -> tuple[Closed, list[Task]]:
        """The superstep closed, with the next one's tasks planned; planning problems (a map
        over a non-list) and an empty plan end the run here."""
        closed = close_superstep(
            graph, origin.state, origin.joins, results, hop.seq, hop.max_steps,
            self.config.state_limit_bytes, origin.deferred,
        )  # fmt: skip
        if closed.end is not None:
            return closed, []
        try:
            planned = plan_tasks(graph, closed.next_nodes, closed.state, closed.sends)
        except ReducerError as exc:
            return replace(closed, next_nodes=(), end=RunEnd("failed", str(exc))), []
        if not planned:
            return replace(closed, next_nodes=(), end=RunEnd("completed")), []
        return closed, planned

    def _close_record(
        self, hop: Hop, origin: Origin, closed: Closed, results: list[TaskResult],
        started: float, attempt: int, tasks: list[TaskRecord] | None = None,
    ) -> StepRecord:  # fmt: skip
        """The step record of a closed superstep (of one task, or of several)."""
        ordered = sorted(results, key=lambda r: r.task.sort_key())
        failed = next((r for r in ordered if not r.ok), None)
        written = {k for r in ordered for k in r.updates}
        # A superstep that failed keeps the state before it, and so changed nothing.
        kept = closed.state is origin.state
        updates = {} if kept else {k: closed.state[k] for k in written if k in closed.state}
        status = closed.end.status if closed.end is not None else "running"
        nodes = closed.next_nodes
        # The step limit fails the run after a superstep that went fine (it still names what
        # would have run next); any other failure is the superstep's own.
        step_failed = failed is not None or (status == "failed" and not nodes)
        single = len(nodes) == 1 and not tasks and not closed.sends
        names = sorted({r.task.node for r in ordered})
        return StepRecord(
            run_id=hop.run_id, seq=hop.seq, node=", ".join(names) or hop.node,
            tool=", ".join(sorted({r.tool for r in ordered})),
            status="failed" if step_failed else "ok",
            updates=updates, state=closed.state,
            next_node=nodes[0] if single else (END if status == "completed" else None),
            started_at=started, duration_ms=sum(r.duration_ms for r in ordered),
            error=closed.end.error if closed.end is not None else None, attempt=attempt,
            run_status=status, next_nodes=() if single else nodes,
            joins={k: sorted(v) for k, v in closed.joins.items()},
            sends=tuple(s.to_dict() for s in closed.sends), deferred=closed.deferred,
            tasks=tuple(t.summary() for t in sorted(tasks, key=lambda t: (t.node, t.index or 0)))
            if tasks else (),
        )  # fmt: skip

    def _commit_close(
        self, graph: Graph, hop: Hop, step: StepRecord, end: RunEnd | None, delivery_id: str,
        audience: Audience,
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
            self._dispatch_after(graph, hop, step, recheck=False)
        return "finished" if end is not None else "committed"

    def _after_conflict(
        self, graph: Graph, hop: Hop, taken: StepRecord, delivery_id: str
    ) -> HopResult:
        if taken.committed_by != delivery_id or taken.status == "cancelled":
            return "duplicate"
        # Our own earlier attempt committed and then died before it published or dispatched:
        # finish its work (events are at least once; subscribers dedupe by seq), to the
        # subscribers there are now.
        origin = self._origin(hop)
        audience = origin.audience.after_commit() if origin is not None else NOBODY_YET
        if taken.run_status != "running":
            end = RunEnd(taken.run_status, self.store.get_run(hop.run_id).error)
            self._publish(taken, end, audience)
            return "recovered"
        self._publish(taken, None, audience)
        self._dispatch_after(graph, hop, taken, recheck=True)
        return "recovered"

    def _dispatch_after(self, graph: Graph, hop: Hop, step: StepRecord, *, recheck: bool) -> None:
        """Dispatch the hops of the superstep after ``step``."""
        planned = plan_tasks(graph, step.successors, step.state, step.sends)
        self._dispatch(hop.run_id, hop.graph_id, hop.max_steps, hop.seq + 1, graph, planned,
                       step.state, recheck=recheck)  # fmt: skip

    def _dispatch(
        self, run_id: str, graph_id: str, max_steps: int, seq: int, graph: Graph,
        planned: list[Task], state: dict[str, Any], *, recheck: bool,
    ) -> None:  # fmt: skip
        parallel = len(planned) > 1
        hops = [
            Hop(run_id, graph_id, seq, t.node, max_steps, recheck=recheck, index=t.index,
                parallel=parallel)
            for t in planned
            if _starts_now(graph, t)
        ]  # fmt: skip
        # A task of several reads the state before its superstep with its slot check in any
        # case (_process_task), so its hop carries none: a map's n hops would otherwise carry
        # the state n times, and n * n items when the state holds the list it maps over.
        if not parallel:
            hops = [self._inline(hop, state) for hop in hops]
        if len(hops) == 1:
            self.queue.dispatch(hops[0])
        else:
            self.queue.dispatch_batch(hops)

    def _inline(self, hop: Hop, state: dict[str, Any]) -> Hop:
        if state_size(state) <= self.config.inline_state_bytes:
            return replace(hop, state=state)
        return replace(hop, state=None)

    # -- the slot check ----------------------------------------------------------------------
    def _origin(self, hop: Hop) -> Origin | None:
        """Where the hop's superstep starts, or ``None`` if the hop's run is not at that
        superstep or did not plan this task there: unknown, final, of another graph, routed
        elsewhere, or with a different number of tasks than the hop says."""
        slot = self.store.read_slot(hop.run_id, hop.seq)
        if hop.seq == 0:
            run = slot.run
            if run is None or run.status != "running" or run.graph_id != hop.graph_id:
                return None
            nodes: tuple[str, ...] = (self.graphs(run.graph_id).entry,)
            state, joins = run.input, NO_JOINS
            sends: tuple[dict[str, Any], ...] = ()
            deferred: tuple[str, ...] = ()
        else:
            previous = slot.previous
            if previous is None or previous.run_status != "running":
                return None
            state, nodes = previous.state, previous.successors
            joins = {k: frozenset(v) for k, v in previous.joins.items()}
            sends, deferred = previous.sends, previous.deferred
        graph = self.graphs(hop.graph_id)
        named = [*nodes, *deferred, *(s["node"] for s in sends)]
        if not all(node in graph.nodes for node in named):  # a hop claiming another graph
            return None
        try:
            planned = plan_of(graph, nodes, state, sends)
        except ReducerError:
            return None
        audience = Audience(slot.subscribers, slot.previous)
        origin = Origin(state, joins, planned, audience, deferred)
        task = Task(hop.node, hop.index)
        return origin if task in planned and origin.parallel == hop.parallel else None

    # -- events and dead letters -------------------------------------------------------------
    def _publish(self, step: StepRecord, end: RunEnd | None, audience: Audience) -> None:
        """The step's events, to the subscribers read with its slot; a run's last step has no
        next publisher to make up for a subscriber that came meanwhile, so it reads them
        after its commit (:class:`~engine.ports.Audience`)."""
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

    def fail(self, hop: Hop, reason: str) -> bool:
        """Fail the run because ``hop`` is being dead-lettered: a failed step record in its
        superstep's slot. True if this call ended the run; False if it changed nothing (the
        run is not at that superstep, is final, or the slot was taken meanwhile)."""
        graph = self._graph_of(hop)
        origin = self._origin(hop) if graph is not None else None
        if graph is None or origin is None:
            return False
        step = StepRecord(
            run_id=hop.run_id, seq=hop.seq, node=hop.task_key, tool=graph.nodes[hop.node].tool,
            status="failed", updates={}, state=origin.state, next_node=None,
            started_at=self.clock(), duration_ms=0.0, error=reason, run_status="failed",
        )  # fmt: skip
        try:
            self.store.commit_step(step, RunEnd("failed", reason))
        except (StepConflict, ConflictError):
            return False
        self._publish(step, RunEnd("failed", reason), origin.audience)  # read after it
        return True

    def _graph_of(self, hop: Hop) -> Graph | None:
        """The hop's graph if it has the hop's node; ``None`` for a hop no run could send."""
        try:
            graph = self.graphs(hop.graph_id)
        except GraphNotFound:
            return None
        return graph if hop.node in graph.nodes else None


def _readers(graph: Graph, plan: Plan) -> int:
    """How many of the plan's tasks may be its last, and so read the fan-in."""
    sent = len(plan.sends)  # each item sent is a task of its own, uncapped
    return sent + sum(_closing(graph, node, size) for node, size in plan.sizes.items())


def _may_close(graph: Graph, task: Task, planned: Plan) -> bool:
    """Whether ``task`` can be its superstep's last, and so worth the fan-in read: only the
    last ``cap`` items of a capped map can (:func:`_closing`)."""
    size = planned.sizes.get(task.node)
    if size is None or task.index is None:
        return True
    return task.index >= size - _closing(graph, task.node, size)


def _closing(graph: Graph, node: str, size: int | None) -> int:
    """How many of ``node``'s tasks may close the superstep: a plain node's one task, every
    item of an uncapped map, the last ``cap`` of a capped one. Each of the others started
    the item ``cap`` places after it, which commits later; skipping their reads keeps a capped
    map's fan-in reads at ``cap``, not one per item (each read returns every task committed
    so far)."""
    if size is None:
        return 1
    spec = graph.nodes[node].map
    cap = spec.max_concurrency if spec is not None else None
    return size if cap is None else min(size, cap)


def _starts_now(graph: Graph, task: Task) -> bool:
    """A capped map's items beyond its cap start as earlier ones commit (``_next_item``)."""
    spec = graph.nodes[task.node].map
    cap = spec.max_concurrency if spec is not None else None
    return cap is None or task.index is None or task.index < cap
