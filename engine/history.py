"""Time travel: a run's history superstep by superstep, forks from any superstep, redrives of
a failed run, and edits of a paused run's state. Every step record is already a checkpoint
(the state after its superstep, and what runs next); these commands build on that.

Each command writes one log entry (a :class:`~engine.ports.StepRecord` whose ``source``
names the command, and which runs no tool) through the store's one primitive, so that it
has happened whole or not at all, and then sends what runs next through the protocol's
outbox (:meth:`engine.protocol.HopProtocol.dispatch_after`)::

    fork      create_run(header, first=entry at slot 0)   -- both or neither
              (crash here: the sweeper, or the retry with the same idempotency key, sends
               the first hop; the retry finds the run and re-sends it with ``recheck``)
              dispatch superstep 1
    redrive   commit_step(entry at slot k+1, RunEnd("running", from_status="failed"))
              -- one conditional write: of two concurrent redrives, one wins the slot and
                 the other changes nothing (409)
              (crash here: the run is running with an open slot: the sweeper sends it)
              dispatch superstep k+2, which runs the failed superstep's tasks again, at
              the attempt after the failed one (the entry's ``attempt``; the tools see it)
    edit      commit_step(entry at slot k+1), refused unless the run accepts edits

LangGraph's semantics, ported: a fork is ``update_state`` on a past checkpoint followed by
a run from it. With ``as_node`` the update is applied as if that node had written it, and
the run goes where that node routes on the updated state; without it, an update to a
superstep that ran one node is applied as that node's (LangGraph infers the last writer),
an empty update replays the superstep's recorded continuation, and an update to a
superstep of several nodes must name one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from engine.errors import (
    ConditionEvaluationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    StateTooLargeError,
    StepConflict,
)
from engine.events import run_event, step_event
from engine.graph import END, Graph, NoRouteError
from engine.idempotency import check_same_request, input_digest
from engine.lifecycle import accepts_edits
from engine.ports import Audience, RunEnd, RunRecord, RunStore, StepRecord
from engine.reducers import ReducerError
from engine.superstep import (
    Task,
    TaskResult,
    close_superstep,
    merge_updates,
    plan_of,
    routes_after,
    state_size,
)

if TYPE_CHECKING:
    from engine.service import RunService

UPDATE_WRITER = Task("__update__")
"""Who writes an update applied without a node (it conflicts with nobody)."""


# -- history ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One superstep of a run's history: what ran, how it went, where it went next, and (when
    asked for) the state after it."""

    seq: int
    node: str
    status: str
    run_status: str
    next: list[str] | str | None
    started_at: float
    error: str | None = None
    source: str = ""
    state: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "seq": self.seq, "node": self.node, "status": self.status,
            "run_status": self.run_status, "next": self.next, "started_at": self.started_at,
            "error": self.error, "source": self.source or None,
        }  # fmt: skip
        if self.state is not None:
            doc["state"] = self.state
        return doc


@dataclass(frozen=True, slots=True)
class HistoryPage:
    entries: list[HistoryEntry]
    next_after: int | None
    """Pass back as ``after`` for the next page; ``None``: no more."""


def state_of(store: RunStore, step: StepRecord) -> dict[str, Any]:
    """The state after ``step``'s superstep. The one place a state is read back from a step
    record: a store that keeps steps as deltas rebuilds it here from the nearest snapshot."""
    del store  # every step record holds its full state today
    return step.state


def state_after(store: RunStore, run_id: str, seq: int) -> tuple[StepRecord, dict[str, Any]]:
    """Step ``seq`` and the state after it; NotFoundError if it is not committed."""
    step = store.get_step(run_id, seq)
    if step is None:
        raise NotFoundError("step", str(seq))
    return step, state_of(store, step)


def history(
    store: RunStore, run_id: str, after: int = -1, limit: int = 100, *, states: bool = False
) -> HistoryPage:
    """The supersteps with ``seq > after``, in order, at most ``limit``. Entries carry no
    state unless ``states`` asks for each one's (:func:`state_of`). RunNotFound if unknown."""
    page = store.list_steps(run_id, after=after, limit=limit, states=states)
    entries = [_entry(store, step, states) for step in page.items]
    more = page.cursor is not None and len(entries) == limit
    return HistoryPage(entries, entries[-1].seq if more and entries else None)


def _entry(store: RunStore, step: StepRecord, states: bool) -> HistoryEntry:
    return HistoryEntry(
        step.seq, step.node, step.status, step.run_status,
        list(step.next_nodes) if step.next_nodes else step.next_node, step.started_at,
        step.error, step.source, state_of(store, step) if states else None,
    )  # fmt: skip


# -- where a superstep goes on ----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Continuation:
    """What a command's entry records: the state, and what the next superstep runs."""

    state: dict[str, Any]
    nodes: tuple[str, ...]
    joins: dict[str, list[str]]
    sends: tuple[dict[str, Any], ...] = ()
    deferred: tuple[str, ...] = ()
    ends: bool = False
    """Nothing is left to run: the entry completes the run."""


def recorded(step: StepRecord, state: dict[str, Any]) -> Continuation:
    """Where ``step`` said its run goes next (even when the step limit stopped it there)."""
    nodes = step.next_nodes or ((step.next_node,) if step.next_node not in (None, END) else ())
    ends = not nodes and not step.sends and not step.deferred
    return Continuation(state, tuple(nodes), dict(step.joins), step.sends, step.deferred, ends)


def before(store: RunStore, graph: Graph, run: RunRecord, failed: StepRecord) -> Continuation:
    """Where superstep ``failed.seq`` started: the state and plan that run it again."""
    if failed.seq == 0:
        return Continuation(run.input, (graph.entry,), {})
    previous = store.get_step(run.run_id, failed.seq - 1)
    if previous is None:
        raise ConflictError(f"run {run.run_id!r} has no step {failed.seq - 1} to start from")
    return recorded(previous, state_of(store, previous))


def written_as(
    service: RunService, graph: Graph, step: StepRecord, state: dict[str, Any],
    update: dict[str, Any], node: str,
) -> Continuation:  # fmt: skip
    """``update`` applied to ``state`` as if ``node`` had written it in a superstep after
    ``step``, and the run routed on from ``node`` (joins count it as having run)."""
    try:
        own = merge_updates(graph, state, [(Task(node), update)])
        targets, sends = routes_after(graph, service.tools, node, own)
    except (ReducerError, ConditionEvaluationError, NoRouteError) as exc:
        raise InvalidInputError(f"update as {node!r}: {exc}") from None
    result = TaskResult(Task(node), graph.nodes[node].tool, update, targets, 0.0, None, sends)
    joins = {k: frozenset(v) for k, v in step.joins.items()}
    closed = close_superstep(
        graph, state, joins, [result], 0, MAX_SUPERSTEPS_FOR_ENTRY,
        service.config.state_limit_bytes, step.deferred,
    )  # fmt: skip
    if closed.end is not None and closed.end.status == "failed":
        raise InvalidInputError(f"update as {node!r}: {closed.end.error}")
    return Continuation(
        closed.state, closed.next_nodes, {k: sorted(v) for k, v in closed.joins.items()},
        tuple(s.to_dict() for s in closed.sends), closed.deferred, closed.end is not None,
    )  # fmt: skip


MAX_SUPERSTEPS_FOR_ENTRY = 2
"""An entry is superstep 0 of the close it borrows: the step limit is the run's, checked by
the supersteps that follow it, never by the entry."""


def merged(service: RunService, graph: Graph, state: dict[str, Any],
           update: dict[str, Any], writer: Task) -> dict[str, Any]:  # fmt: skip
    """``state`` with ``update`` merged through the reducers, within the state limit."""
    try:
        result = merge_updates(graph, state, [(writer, update)])
    except ReducerError as exc:
        raise InvalidInputError(f"update: {exc}") from None
    limit = service.config.state_limit_bytes
    size = state_size(result) if limit is not None else 0
    if limit is not None and size > limit:
        raise StateTooLargeError(size, limit)
    return result


def entry(
    run_id: str, seq: int, go: Continuation, *, source: str, node: str, at: float,
    graph_id: str, max_steps: int, updates: dict[str, Any], attempt: int = 1,
    breakpoints: dict[str, list[str]] | None = None,
) -> StepRecord:  # fmt: skip
    """A command's log entry: no tool ran; it records the state and what runs next (and the
    run's own breakpoints, carried down as its graph and step limit are)."""
    single = len(go.nodes) == 1 and not go.sends
    return StepRecord(
        run_id=run_id, seq=seq, node=node, tool="", status="ok", updates=updates,
        state=go.state, next_node=go.nodes[0] if single else (END if go.ends else None),
        started_at=at, duration_ms=0.0, attempt=attempt, committed_by=source,
        run_status="completed" if go.ends else "running",
        next_nodes=() if single else go.nodes, joins=go.joins, graph_id=graph_id,
        max_steps=max_steps, sends=go.sends, deferred=go.deferred, source=source,
        breakpoints=breakpoints,
    )  # fmt: skip


def _changed(state: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    return {k: state[k] for k in update if k in state}


# -- fork ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ForkRequest:
    from_seq: int
    update: dict[str, Any]
    as_node: str | None = None
    idempotency_key: str | None = None
    max_steps: int | None = None


def fork_continuation(
    service: RunService, graph: Graph, base: StepRecord, state: dict[str, Any],
    request: ForkRequest,
) -> tuple[Continuation, str]:  # fmt: skip
    """Where a fork of ``base`` starts, and the node its update is written as ("" if none)."""
    node = request.as_node
    if node is not None and node not in graph.nodes:
        raise InvalidInputError(f"as_node: the graph has no node {node!r}")
    if node is None and request.update:
        ran = base.node if not base.source else ""
        if ran in graph.nodes:
            node = ran  # LangGraph applies an update as the superstep's one writer
        elif ran:
            raise InvalidInputError(f"superstep {base.seq} ran several nodes ({ran}): name "
                                    "the one the update is written as in as_node")  # fmt: skip
    if node is not None:
        return planned(graph, written_as(service, graph, base, state, request.update, node)), node
    go = recorded(base, merged(service, graph, state, request.update, UPDATE_WRITER))
    return planned(graph, go), ""


def planned(graph: Graph, go: Continuation) -> Continuation:
    """``go`` as the protocol's close would leave it: a continuation whose plan has no task
    (a map over an empty list) ends the run; one that cannot be planned is refused."""
    if go.ends:
        return go
    try:
        plan = plan_of(graph, go.nodes, go.state, go.sends)
    except ReducerError as exc:
        raise InvalidInputError(f"update: {exc}") from None
    return go if plan else replace(go, nodes=(), sends=(), deferred=(), ends=True)


def fork_run(
    service: RunService, parent: RunRecord, request: ForkRequest, owner: str | None
) -> tuple[RunRecord, bool]:
    """A new run of ``parent``'s graph, owned by ``owner``, that starts from the state after
    superstep ``request.from_seq`` with ``request.update`` applied, and goes on from there.
    Returns (run, created); the same idempotency key with the same request finds it."""
    base, state = state_after(service.store, parent.run_id, request.from_seq)
    if base.status != "ok":
        raise ConflictError(
            f"step {base.seq} of run {parent.run_id!r} is {base.status}: fork from the step "
            "before it, or redrive the run"
        )
    graph = service.graph(parent.graph_id)
    limit = service.max_steps_for(request.max_steps, graph, parent.max_steps)
    go, node = fork_continuation(service, graph, base, state, request)
    now = service.clock()
    run_id = service.ids.run_id(f"{parent.run_id}/fork", request.idempotency_key)
    first = entry(run_id, 0, go, source="fork", node=node, at=now, graph_id=parent.graph_id,
                  max_steps=limit, updates=_changed(go.state, request.update),
                  breakpoints=parent.breakpoints)  # fmt: skip
    asked = {"from_seq": request.from_seq, "update": request.update, "as_node": request.as_node}
    header = RunRecord(
        run_id, parent.graph_id, first.run_status, go.state, limit, now, now,
        node=first.next_node if first.run_status == "running" else None,
        idempotency_key=request.idempotency_key, owner=owner,
        input_digest=input_digest(asked) if request.idempotency_key is not None else None,
        parent_run_id=parent.run_id, parent_seq=base.seq, breakpoints=parent.breakpoints,
    )  # fmt: skip
    run, created = service.store.create_run(header, first)
    if not created:
        check_same_request(run, header)
        stored = service.store.get_step(run_id, 0)
        if run.status == "running" and run.steps == 1 and stored is not None:
            service.protocol.dispatch_after(stored, recheck=True)  # it may never have left
        return run, False
    _announce(service, run, first)
    if first.run_status == "running":
        service.protocol.dispatch_after(first, recheck=False)
    return run, True


def _announce(service: RunService, run: RunRecord, first: StepRecord) -> None:
    """A new run's events: nobody can have subscribed yet, so this reads no subscribers;
    a subscriber replays the entry from the log and hears where it came from."""
    now = service.clock()
    started = run_event(run.run_id, first.run_status, now, steps=1)
    started["parent"] = {"run_id": run.parent_run_id, "seq": run.parent_seq}
    service.notifier.publish(run.run_id, [step_event(first, now), started],
                             Audience(subscribers=()))  # fmt: skip


# -- redrive ------------------------------------------------------------------------------------
def redrive_run(service: RunService, run_id: str, max_steps: int | None = None) -> RunRecord:
    """Take a failed run back to ``running``: a ``redrive`` entry after its failed step, then
    the failed superstep's tasks again (a new attempt; the failure stays in the log). One
    conditional transition: of two concurrent redrives, one starts the continuation and the
    other raises ConflictError, as does a run that is not failed. A run stopped by its step
    limit needs ``max_steps`` raised above it."""
    store = service.store
    run = store.get_run(run_id)
    if run.status != "failed":
        raise ConflictError(f"run {run_id!r} is {run.status}: only a failed run can be redriven")
    failed = store.get_step(run_id, run.steps - 1)
    if failed is None:
        raise ConflictError(f"run {run_id!r} failed before any step: start it again")
    graph = service.graph(run.graph_id)
    raised: int | None = None
    if failed.status == "ok":  # the superstep went through; its step limit stopped the run
        raised = _raised_limit(service, graph, run, failed, max_steps)
        go = recorded(failed, state_of(store, failed))
    else:
        go = before(store, graph, run, failed)
        if max_steps is not None:
            raised = _raised_limit(service, graph, run, failed, max_steps)
    limit = raised if raised is not None else run.max_steps
    go = planned(graph, go)
    if go.ends:
        raise ConflictError(f"run {run_id!r} has nothing left to run after step {failed.seq}")
    at = service.clock()
    step = entry(run_id, failed.seq + 1, go, source="redrive", node="", at=at,
                 graph_id=run.graph_id, max_steps=limit, updates={},
                 attempt=_last_attempt(failed) + 1, breakpoints=run.breakpoints)  # fmt: skip
    try:
        store.commit_step(step, RunEnd("running", None, "failed", raised))
    except StepConflict:
        raise ConflictError(f"run {run_id!r} was redriven (or changed) meanwhile") from None
    event = run_event(run_id, "running", at, steps=step.seq + 1)
    event["redriven_from"] = failed.seq
    service.notifier.publish(run_id, [step_event(step, at), event])
    service.protocol.dispatch_after(step, recheck=False)
    return store.get_run(run_id)


def _last_attempt(failed: StepRecord) -> int:
    """The last attempt the failed superstep made: its close's, or its tasks' (each task's
    record says its own: a retried task's is above its superstep's)."""
    return max([failed.attempt, *(int(t.get("attempt", 1)) for t in failed.tasks)])


def redriven_attempts(previous: StepRecord | None) -> int:
    """Attempts the tasks of the superstep after ``previous`` made before it: a redrive's
    entry says its tasks run again at its attempt, so they made one fewer; any other step,
    none. The protocol adds them to each task's attempt (``ctx.attempt``), so that a tool
    sees the attempt the log says."""
    if previous is None or previous.source != "redrive":
        return 0
    return previous.attempt - 1


def _raised_limit(
    service: RunService, graph: Graph, run: RunRecord, failed: StepRecord, asked: int | None
) -> int:
    """The step limit a redrive runs under: above the one that stopped the run, and high
    enough for the redrive's entry and one superstep after it."""
    least = max(run.max_steps + 1, failed.seq + 4)
    if asked is None or asked < least:
        raise InvalidInputError(
            f"run {run.run_id!r} stopped at its step limit ({run.max_steps}): redrive it with "
            f"max_steps of at least {least}"
        )
    return service.max_steps_for(asked, graph, run.max_steps)


# -- state edits --------------------------------------------------------------------------------
def edit_state(
    service: RunService, run_id: str, update: dict[str, Any], as_node: str | None = None
) -> RunRecord:
    """Apply ``update`` to a paused run's state through the reducers (as ``as_node``'s
    write when named), recorded as an ``edit`` entry of its own in the run's next slot. The
    run goes on where it waits. ConflictError unless the run accepts edits
    (:func:`engine.lifecycle.accepts_edits`), or if it moved on meanwhile."""
    store = service.store
    run = store.get_run(run_id)
    if not accepts_edits(run.status):
        raise ConflictError(
            f"run {run_id!r} is {run.status}: only a paused run's state can be edited (fork "
            "it to change the state of another)"
        )
    last = store.get_step(run_id, run.steps - 1)
    if last is None:
        raise ConflictError(f"run {run_id!r} has no step to edit")
    graph = service.graph(run.graph_id)
    if as_node is not None and as_node not in graph.nodes:
        raise InvalidInputError(f"as_node: the graph has no node {as_node!r}")
    writer = UPDATE_WRITER if as_node is None else Task(as_node)
    state = merged(service, graph, state_of(store, last), update, writer)
    at = service.clock()
    edited = replace(
        last, seq=last.seq + 1, node=as_node or "", tool="", status="ok",
        updates=_changed(state, update), state=state, started_at=at, duration_ms=0.0,
        error=None, attempt=1, committed_by="edit", notified=(), tasks=(), tasks_total=0,
        source="edit",
    )  # fmt: skip
    try:  # the edit takes the open slot and the run goes on: paused -> running, one write
        store.commit_step(edited, RunEnd("running", from_status="paused"))
    except StepConflict:
        raise ConflictError(f"run {run_id!r} moved on meanwhile: read it and edit again") from None
    service.notifier.publish(run_id, [step_event(edited, at)])
    # The superstep it waited in starts again on the edited state: a question or a
    # breakpoint asks again (engine/pauses.py), and a task that had finished runs again.
    service.protocol.dispatch_after(edited, recheck=False)
    return store.get_run(run_id)
