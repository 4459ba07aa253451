"""Subgraphs: a node that runs another graph as a child run, finished from outside.

A subgraph node (``{"graph": "<name or id>", "input"?: {...}, "output"?: {...}}``) runs no
tool. Its hop, once its slot check passes, creates the *child run* (its id derived from the
parent's run, superstep and task, so that every delivery of that hop finds the same child),
starts it, and leaves the parent's task open: no hop is in flight for it and nothing runs or
is billed for it while the child runs. The child's end (its last close, a dead letter, a
cancel) *finishes the parent's task from outside*: it commits the parent's task result with
the same conditional write a hop would, so exactly once::

    parent hop (superstep k, task t)            child run                      parent's records
    ---------------------------------------------------------------------------------------------
    slot check; create the child unless it exists (conditional), start it
    "waiting": nothing committed, nothing in flight for t
                                                hops, supersteps ...
                                                last close: STEP#n, run final
         (1) crash here: the child's redelivered hop finds STEP#n taken by itself and tells
             the parent (the protocol's recovery); with no redelivery, the parent's sweeper
             finds t's child final and tells the parent itself
                                                tell the parent: commit t's result -----> TASK#k#t
                                                (or STEP#k), conditional on "slot empty",
                                                as delivery "child:<child id>"
         (2) crash here: a second telling finds the slot taken by that same delivery and
             finishes the parent's follow-up (its fan-in, close and dispatch); a telling of
             a slot someone else took (a cancel) changes nothing

The sweeper leaves a waiting task alone while its child runs (the child's own sweep keeps
the child going), and sends its hop again only if the child was never created. Cancelling a
parent cancels the children of its open superstep (and theirs); a child whose parent ended
without telling it (a cancel that crashed halfway) is cancelled by its own sweep.

A child that fails or is cancelled fails the parent's task, with the child's reason, the way
a failed tool fails its task (:mod:`engine.retries`): the node's ``retry`` sends the task's
next attempt as a delayed hop, and that hop creates a child of its own (its id derived from
the attempt as well, so that each attempt has one child, whoever delivers it); its
``on_error`` routes with the error under ``error``. The failure is :data:`CHILD_FAILED`
(``SubgraphFailed``, retried by default); a cancelled child's (``SubgraphCancelled``) is
never retried. The sweeper, a dead letter and a cancel look at the child of the task's
current attempt.

A node's ``timeout_s`` bounds how long its task waits for each child, counted from the
child's start (:mod:`engine.subgraph_timeouts`): past it, the child is cancelled and the task
fails with a ``TimeoutError`` (:data:`~engine.subgraph_timeouts.TIMED_OUT`, as a tool's
deadline fails its task), which its ``retry`` (when ``retry_on`` names it) and ``on_error``
handle as any failed child's. Exactly one of the child's own end and the timeout's cancel
wins the child's slot, and the task's result is read from the child's final record, so it
is committed once, whoever tells it.

The child runs under the parent's owner, and counts against the owner's ``runs_in_flight``
quota (:mod:`engine.runs_quota`): a child the quota refuses is never created, and the
parent's task fails saying so. Which graph a subgraph node names is decided once,
when its graph is created (:func:`resolve_subgraphs`): the reference must name a graph its
owner can read, may not be the graph itself, and nesting is at most
:data:`MAX_SUBGRAPH_DEPTH` deep.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from engine.commands import cancel_run
from engine.errors import (
    ConflictError,
    GraphNotFound,
    GraphValidationError,
    Problem,
    QuotaExceeded,
    RunNotFound,
)
from engine.events import run_status_event
from engine.graph import SUBGRAPH_TOOL, Graph, Node, SubgraphSpec
from engine.owners import weakly
from engine.ports import Hop, RunRecord
from engine.reducers import ReducerError
from engine.retry_policy import Raised
from engine.runs_quota import check_runs_in_flight
from engine.subgraph_timeouts import (
    TIMED_OUT,
    ChildDeadlines,
    timed_out,
    timed_out_reason,
    timeout_error,
    timeout_of,
)
from engine.superstep import Task, TaskResult, plan_of, routed, task_input

if TYPE_CHECKING:
    from engine.protocol import HopProtocol, HopResult, Origin

CHILD_PREFIX = "rs_"
"""Child runs' ids start so: only a run with such an id reads its header to tell a parent."""

MAX_SUBGRAPH_DEPTH = 8
"""Graphs nested in graphs at most this deep (a graph with a subgraph node is depth 2)."""


CHILD_FAILED = Raised(("SubgraphFailed",), default_retry=True)
"""What a task whose child run failed raised, as its node's failure handling sees it
(:mod:`engine.retries`): its ``retry`` retries it (``retry_on`` may name it), and its
``on_error`` routes with it."""
CHILD_CANCELLED = Raised(("SubgraphCancelled",), default_retry=False, never=True)
"""A child run someone cancelled: never retried (a cancel asked it to stop); ``on_error``
still routes with it."""


def child_run_id(parent_run_id: str, seq: int, task_key: str, attempt: int = 1) -> str:
    """The child run of a parent's task at ``attempt``: the same for every delivery of the
    task's hop; each retry of the task (:mod:`engine.retries`) runs a child of its own."""
    key = f"{parent_run_id}\0{seq}\0{task_key}" + (f"\0{attempt}" if attempt > 1 else "")
    digest = hashlib.sha256(key.encode()).hexdigest()
    return CHILD_PREFIX + digest[:24]


@dataclass(frozen=True, slots=True)
class ParentLink:
    """Where a child run's result goes: the parent's run, superstep and task (stored on the
    child's header as ``parent``; the parent's task records the child's id)."""

    run_id: str
    graph_id: str
    seq: int
    node: str
    index: int | None
    parallel: bool
    attempt: int = 1
    """The parent task's attempt this child runs (a retry runs a new child)."""

    @property
    def task(self) -> Task:
        return Task(self.node, self.index)

    def hop(self) -> Hop:
        return Hop(self.run_id, self.graph_id, self.seq, self.node, recheck=True,
                   index=self.index, parallel=self.parallel, attempt=self.attempt)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        doc = {"run_id": self.run_id, "graph_id": self.graph_id, "seq": self.seq,
               "node": self.node, "index": self.index, "task": self.task.key,
               "parallel": self.parallel}  # fmt: skip
        if self.attempt > 1:
            doc["attempt"] = self.attempt
        return doc

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> ParentLink:
        return cls(str(doc["run_id"]), str(doc["graph_id"]), int(doc["seq"]), str(doc["node"]),
                   doc.get("index"), bool(doc.get("parallel")),
                   int(doc.get("attempt") or 1))  # fmt: skip


def input_of(spec: SubgraphSpec, view: Mapping[str, Any], node: Node) -> dict[str, Any]:
    """The child's input: the task's keys renamed by ``input`` (parent -> child), or without
    it, the task's view; a map item's child starts from its item alone (``{as: item}``, as
    LangGraph's ``Send`` of that item would), so that it gives back none of the parent's
    keys it was never meant to write (each item would write them again)."""
    if spec.input is None and node.map is not None:
        return {node.map.as_: view[node.map.as_]}
    if spec.input is None:
        return dict(view)
    return {child: view[parent] for parent, child in spec.input.items() if parent in view}


def output_of(
    spec: SubgraphSpec, child_state: Mapping[str, Any], parent_state: Mapping[str, Any]
) -> dict[str, Any]:
    """The parent task's updates: the child's final keys renamed by ``output`` (child ->
    parent), or, without it, every key of the child's final state that the parent's state
    has (LangGraph's shared keys: each goes through the parent's reducer)."""
    if spec.output is None:
        return {k: v for k, v in child_state.items() if k in parent_state}
    return {parent: child_state[child] for child, parent in spec.output.items()
            if child in child_state}  # fmt: skip


class Subgraphs:
    """The protocol's subgraph hooks: enter a child (:meth:`enter`), tell its parent when it
    ends (:meth:`ended`), and keep the sweeper and cancel aware of both."""

    def __init__(self, protocol: HopProtocol) -> None:
        self.protocol = weakly(protocol)
        config = protocol.config
        self.deadlines = ChildDeadlines(protocol.queue, protocol.clock, lease_s=config.lease_s,
                                        sweeper_delays=config.sweeper_delays)  # fmt: skip
        self.runs_in_flight = 0
        """The owner's ``runs_in_flight`` quota a new child counts against (0: no limit;
        :mod:`engine.runs_quota`)."""

    # -- a parent's task starts its child ------------------------------------------------------
    def enter(self, graph: Graph, hop: Hop, origin: Origin) -> HopResult:
        """Create and start the child of the hop's task, unless it exists; if it already
        ended (a redelivery after the parent was never told), tell the parent now."""
        store = self.protocol.store
        node = graph.nodes[hop.node]
        spec = _spec(node)
        task = Task(hop.node, hop.index)
        child_id = child_run_id(hop.run_id, hop.seq, task.key, hop.attempt)
        if hop.attempt > 1:  # a retry: only the one its previous attempt scheduled, on time
            # (no delivery id: a child's end records a subgraph task's failed attempts, as
            # delivery "child:<id>", never a hop, so none is this hop's own)
            early = self.protocol.retries.before_run(graph, hop, "", suspect=True)
            if early is not None:
                return early
        try:
            child_graph = self.protocol.graphs(spec.graph)
            view = task_input(graph, task, origin.state, origin.planned)
            state = child_graph.start_state(input_of(spec, view, node))
            plan_of(child_graph, (child_graph.entry,), state)
            parent = store.get_run(hop.run_id)
        except RunNotFound:
            return "stale"
        except (GraphNotFound, ReducerError) as exc:  # the task fails; no child is created
            error = f"subgraph {spec.graph!r} could not start: {exc}"
            return self._finish(hop, lambda _g, _o: _failed(node, task, error, None), child_id)
        refused = self._over_quota(child_id, parent.owner)
        if refused is not None:  # the task fails; no child is created
            error = f"subgraph {spec.graph!r} could not start: {refused}"
            return self._finish(hop, lambda _g, _o: _failed(node, task, error, None), child_id)
        now = self.protocol.clock()
        link = ParentLink(hop.run_id, hop.graph_id, hop.seq, hop.node, hop.index, hop.parallel,
                          hop.attempt)  # fmt: skip
        header = RunRecord(
            child_id, spec.graph, "running", state, child_graph.max_steps or origin.max_steps,
            now, now, node=child_graph.entry, owner=parent.owner, parent=link.to_dict(),
        )  # fmt: skip
        child, created = store.create_run(header)
        if child.is_final:
            return self.tell_parent(child)
        if created:
            self._announce(child)
        elif self.deadlines.passed(node, child):  # its held hop (or the sweeper's) is due
            return self.time_out(child, node)
        if child.steps == 0:
            self.protocol.start(child, recheck=not created)
        self.deadlines.hold(node, hop, child, created=created)
        return "waiting"

    def time_out(self, child: RunRecord, node: Node) -> HopResult:
        """``child`` outlived its task's deadline: cancel it (unless its own end won its slot
        first) and tell the parent from its final record (:mod:`engine.subgraph_timeouts`)."""
        timeout = timeout_of(node)
        assert timeout is not None
        ended = self._cancel(child.run_id, timed_out_reason(timeout))
        if ended is None:  # it ended first (its last close, or a cancel, took its slot)
            try:
                ended = self.protocol.store.get_run(child.run_id)
            except RunNotFound:
                return "stale"
        return self.tell_parent(ended) if ended.is_final else "waiting"

    def _over_quota(self, child_id: str, owner: str | None) -> QuotaExceeded | None:
        """The quota's refusal of a new child of ``owner``'s (a child that exists already,
        a redelivery's, is not counted again), or ``None``."""
        if self.runs_in_flight <= 0 or owner is None:
            return None
        try:
            self.protocol.store.get_run(child_id)
            return None
        except RunNotFound:
            pass
        try:
            check_runs_in_flight(self.protocol.store, owner, self.runs_in_flight)
        except QuotaExceeded as exc:
            return exc
        return None

    def _announce(self, child: RunRecord) -> None:
        try:
            event = run_status_event(child, child.created_at)
            self.protocol.notifier.publish(child.run_id, [event])
        except Exception:  # progress is best effort
            return

    # -- a child's end finishes its parent's task ---------------------------------------------
    def ended(self, run_id: str) -> None:
        """A run just ended (its final step is committed): if it is a child, tell its parent.
        Any other run costs nothing here (its id says it is no child)."""
        if not run_id.startswith(CHILD_PREFIX):
            return
        try:
            child = self.protocol.store.get_run(run_id)
        except RunNotFound:
            return
        if child.parent is not None and child.is_final:
            self.tell_parent(child)

    def tell_parent(self, child: RunRecord) -> HopResult:
        """Commit the parent's task from the child's end, exactly once (a conditional write
        as delivery ``child:<id>``; telling it again finishes only what was left undone). A
        child that failed or was cancelled fails the task as a failed tool does: its node's
        ``retry`` and ``on_error`` decide (:data:`CHILD_FAILED`). The task started when its child
        did, and its record says so: its start plus its duration is the child's end, not a
        time to come (the sweeper judges a superstep's progress by it)."""
        assert child.parent is not None
        link = ParentLink.from_dict(child.parent)

        def result_of(graph: Graph, origin: Origin) -> TaskResult:
            node = graph.nodes[link.node]
            took = round(max(0.0, child.updated_at - child.created_at) * 1000, 3)
            if timed_out(node, child):
                error = timeout_error(child, node.failure.timeout_s or 0.0)
                return replace(_failed(node, link.task, error, child), duration_ms=took,
                               raised=TIMED_OUT)  # fmt: skip
            if child.status != "completed":
                error = f"subgraph run {child.run_id} {child.status}: {child.error}"
                raised = CHILD_CANCELLED if child.status == "cancelled" else CHILD_FAILED
                return replace(_failed(node, link.task, error, child), duration_ms=took,
                               raised=raised)  # fmt: skip
            updates = output_of(_spec(node), child.state, origin.state)
            return routed(graph, self.protocol.tools, link.task, origin.state, updates,
                          took, child.run_id)  # fmt: skip

        return self._finish(link.hop(), result_of, child.run_id, started=child.created_at)

    def _finish(
        self, hop: Hop, result_of: Callable[[Graph, Origin], TaskResult], child_id: str,
        started: float | None = None,
    ) -> HopResult:  # fmt: skip
        return self.protocol.finish_task(hop, result_of, f"child:{child_id}", started=started)

    def attempt_of(self, run_id: str, seq: int, graph: Graph, task: Task) -> int:
        """The attempt a subgraph task is at: the one after its last failed attempt that
        scheduled another (a node without ``retry`` is always at its first)."""
        if graph.nodes[task.node].failure.retry is None:
            return 1
        scheduled = [
            a.attempt for a in self.protocol.store.list_attempts(run_id, seq)
            if (a.node, a.index) == (task.node, task.index) and a.retry_at is not None
        ]  # fmt: skip
        return max(scheduled, default=0) + 1

    # -- the sweeper and cancel ----------------------------------------------------------------
    def waiting(self, run_id: str, seq: int, graph: Graph) -> Waiting | None:
        """For the sweeper: whether a task of superstep ``seq`` waits on a child (so its hop
        is not re-sent). A child that ended without telling the parent tells it now; a task
        whose child was never created is stranded like any other; a task whose child passed
        its deadline is kept in :attr:`Waiting.overdue`, for the sweeper to send its hop
        (:mod:`engine.subgraph_timeouts`)."""
        if not any(n.subgraph is not None for n in graph.nodes.values()):
            return None
        return Waiting(self, run_id, seq, graph)

    def has_child(self, graph: Graph, hop: Hop) -> bool:
        """For a dead letter: whether the hop's task has a child run, so that it is waiting,
        not dead (a child that ended without telling the parent tells it now)."""
        if graph.nodes[hop.node].subgraph is None:
            return False
        try:
            child = self.protocol.store.get_run(
                child_run_id(hop.run_id, hop.seq, Task(hop.node, hop.index).key, hop.attempt)
            )
        except RunNotFound:
            return False
        if child.is_final:
            self.tell_parent(child)
        return True

    def orphaned(self, run: RunRecord) -> bool:
        """For the sweeper: a running child whose parent already ended (a cancel that died
        before reaching it) is cancelled; True if it was."""
        if run.parent is None:
            return False
        try:
            parent = self.protocol.store.get_run(str(run.parent["run_id"]))
        except RunNotFound:
            parent = None
        if parent is not None and not parent.is_final:
            return False
        self._cancel(run.run_id, "its parent run ended")
        return True

    def after_cancel(self, run: RunRecord) -> None:
        """A run was cancelled: cancel the children of the superstep the cancel closed (and
        theirs), and if it is a child, fail its parent's task."""
        self._cancel_children(run)
        self.ended(run.run_id)

    def _cancel_children(self, run: RunRecord) -> None:
        graph = self.protocol.graphs(run.graph_id)
        if not any(n.subgraph is not None for n in graph.nodes.values()):
            return
        seq = run.steps - 1  # the slot the cancel took: the superstep it stopped
        previous = self.protocol.store.get_step(run.run_id, seq - 1) if seq > 0 else None
        try:
            planned = (
                plan_of(graph, (graph.entry,), run.input) if previous is None
                else plan_of(graph, previous.successors, previous.state, previous.sends)
            )  # fmt: skip
        except ReducerError:
            return
        for task in planned:
            if graph.nodes[task.node].subgraph is not None:
                attempt = self.attempt_of(run.run_id, seq, graph, task)
                child_id = child_run_id(run.run_id, seq, task.key, attempt)
                self._cancel(child_id, "its parent run was cancelled")

    def _cancel(self, run_id: str, reason: str) -> RunRecord | None:
        """Cancel ``run_id`` and its children; the cancelled run, or ``None`` if it was
        unknown or had already ended."""
        store, now = self.protocol.store, self.protocol.clock()
        try:
            cancelled = cancel_run(store, run_id, now, reason)
        except (RunNotFound, ConflictError):
            return None
        self._cancel_children(cancelled)
        with contextlib.suppress(Exception):  # progress is best effort
            self.protocol.notifier.publish(run_id, [run_status_event(cancelled, now)])
        return cancelled


class Waiting:
    """The sweeper's look at the subgraph tasks of a run's open superstep: called with a
    task, whether it waits on its child (:meth:`Subgraphs.waiting`)."""

    def __init__(self, subgraphs: Subgraphs, run_id: str, seq: int, graph: Graph) -> None:
        self.subgraphs = subgraphs
        self.run_id = run_id
        self.seq = seq
        self.graph = graph
        self.overdue: list[tuple[Task, int]] = []
        """Tasks (and the attempt each is at) whose running child passed its deadline."""

    def __call__(self, task: Task) -> bool:
        node = self.graph.nodes[task.node]
        if node.subgraph is None:
            return False
        subgraphs = self.subgraphs
        attempt = subgraphs.attempt_of(self.run_id, self.seq, self.graph, task)
        child_id = child_run_id(self.run_id, self.seq, task.key, attempt)
        try:
            child = subgraphs.protocol.store.get_run(child_id)
        except RunNotFound:
            return False
        if child.is_final:
            subgraphs.tell_parent(child)
        elif subgraphs.deadlines.overdue(node, child):
            self.overdue.append((task, attempt))
        return True

    def hops(self, graph_id: str, *, parallel: bool) -> list[Hop]:
        """The hops of the overdue tasks, each as its attempt (its hop times its child out)."""
        return [Hop(self.run_id, graph_id, self.seq, t.node, recheck=True, index=t.index,
                    parallel=parallel, attempt=attempt) for t, attempt in self.overdue]  # fmt: skip


def _spec(node: Node) -> SubgraphSpec:
    assert node.subgraph is not None
    return node.subgraph


def _failed(node: Node, task: Task, error: str, child: RunRecord | None) -> TaskResult:
    return TaskResult(task, node.tool, {}, (), 0.0, error,
                      child_run_id=child.run_id if child is not None else None)  # fmt: skip


# -- at graph creation -----------------------------------------------------------------------------
Lookup = Callable[[str], tuple[str, Graph]]
"""A reference (name or id) -> the graph id and graph it names for the caller; raises
GraphNotFound when the caller can read no such graph."""


def resolve_subgraphs(graph: Graph, lookup: Lookup) -> Graph:
    """``graph`` with each subgraph node's reference replaced by the id of the graph it
    names (:data:`Lookup`), so that a stored graph always runs the same child. Refuses, with
    a problem per node, a graph the caller cannot read, a graph that names itself, and
    nesting deeper than :data:`MAX_SUBGRAPH_DEPTH`."""
    problems: list[Problem] = []
    nodes = dict(graph.nodes)
    for node in graph.nodes.values():
        if node.subgraph is None:
            continue
        loc = f"nodes.{node.id}.graph"
        ref = node.subgraph.graph
        if ref == graph.name:
            problems.append(Problem(loc, f"graph {ref!r} is this graph: a graph cannot contain "
                                         "itself"))  # fmt: skip
            continue
        try:
            graph_id, child = lookup(ref)
        except GraphNotFound:
            problems.append(Problem(loc, f"no graph named {ref!r} (by name or id) that you can "
                                         "read: create it first"))  # fmt: skip
            continue
        depth = nesting_depth(child, lookup)
        if depth + 1 > MAX_SUBGRAPH_DEPTH:
            problems.append(Problem(loc, f"graphs nest {depth + 1} deep through {ref!r}; at "
                                         f"most {MAX_SUBGRAPH_DEPTH} are allowed"))  # fmt: skip
            continue
        spec = replace(node.subgraph, graph=graph_id)
        nodes[node.id] = replace(node, tool=SUBGRAPH_TOOL + graph_id, subgraph=spec)
    if problems:
        raise GraphValidationError(problems)
    return replace(graph, nodes=MappingProxyType(nodes))


def nesting_depth(graph: Graph, lookup: Lookup, seen: frozenset[str] = frozenset()) -> int:
    """How deep graphs nest from ``graph`` (1: it has no subgraph node). A reference back to
    a graph on the path (possible only among graphs not yet stored, e.g. in process) counts
    as too deep."""
    deepest = 0
    for node in graph.nodes.values():
        if node.subgraph is None:
            continue
        ref = node.subgraph.graph
        if ref in seen or len(seen) > MAX_SUBGRAPH_DEPTH:
            return MAX_SUBGRAPH_DEPTH + 1
        graph_id, child = lookup(ref)
        deepest = max(deepest, nesting_depth(child, lookup, seen | {ref, graph_id}))
    return deepest + 1


def check_nesting(graph: Graph, lookup: Lookup) -> None:
    """Refuse ``graph`` if it contains itself (directly or through its subgraphs), names a
    graph ``lookup`` does not know, or nests deeper than :data:`MAX_SUBGRAPH_DEPTH` (the
    in-process runner's check: its subgraphs are named, not stored)."""
    try:
        depth = nesting_depth(graph, lookup, frozenset({graph.name}))
    except GraphNotFound as exc:
        raise GraphValidationError([Problem("nodes", f"a subgraph node names {exc}")]) from None
    if depth > MAX_SUBGRAPH_DEPTH:
        reason = (f"graph {graph.name!r} contains itself through its subgraphs, or nests more "
                  f"than {MAX_SUBGRAPH_DEPTH} deep")  # fmt: skip
        raise GraphValidationError([Problem("nodes", reason)])
