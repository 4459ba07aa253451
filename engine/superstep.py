"""Supersteps: the semantics of parallel branches, maps and joins, as pure functions.

A run advances in supersteps (LangGraph's Pregel model). Superstep k runs a set of tasks,
each one node on the state after superstep k-1 (a map node: one task per item of a state
list; a router's or a Command's ``Send``: one task per item sent, on its own payload). When
all of them are done, :func:`close_superstep` merges their updates through each key's
reducer, in LangGraph's order (the tasks of plain nodes by node name, then map items by node
and index, then the tasks sent, in the order sent), and picks the next superstep's tasks:
the targets the tasks routed to, each node once, plus every join whose awaited nodes have
all run since it last ran, plus the items sent; a deferred node waits until nothing else is
left to run.

Nothing here touches a store or a clock: the in-process runner calls these functions directly,
and a durable runner commits what they return.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from engine.errors import ConditionEvaluationError, UnknownToolError
from engine.graph import END, Graph, Node, NoRouteError, Targets, canonical_target
from engine.ports import RunEnd
from engine.records import record
from engine.reducers import ReducerError
from engine.retry_policy import Raised, raised_from
from engine.state_view import StateView
from engine.tools import (
    Goto,
    Interrupt,
    Send,
    ToolContext,
    ToolError,
    Toolkit,
    bounded_text,
    call_tool_command,
)
from engine.wait_spec import WaitError, wakes_at

Joins = Mapping[str, frozenset[str]]
"""Join node -> the nodes it waits for that have run since it last ran."""
NO_JOINS: Joins = MappingProxyType({})


@record(order=True)
class Task:
    """One unit of work of a superstep: a node, and for a map node the item's index."""

    node: str
    index: int | None = None

    @property
    def key(self) -> str:
        """How logs and events name the task: ``grade[3]`` for a map item (or the item sent
        third in its superstep), else the node."""
        return self.node if self.index is None else f"{self.node}[{self.index}]"

    def sort_key(self) -> tuple[int, str, int]:
        """The tasks of plain nodes first, by name; then the indexed ones, by node and index
        (:func:`merge_key` puts sent items in the order sent)."""
        if self.index is None:
            return (0, self.node, -1)
        return (1, self.node, self.index)


def merge_key(graph: Graph, task: Task) -> tuple[int, str, int]:
    """The order a superstep's updates merge in, LangGraph's: tasks of nodes reached by an
    edge or a branch by node name, then map items by node and index, then the tasks of items
    sent (``Send``), in the order sent (LangGraph's ``PULL`` tasks by name, ``PUSH`` by
    index)."""
    if task.index is None:
        return (0, task.node, -1)
    if graph.nodes[task.node].map is not None:
        return (1, task.node, task.index)
    return (2, "", task.index)


class WriteConflictError(ReducerError):
    """Two tasks of one superstep wrote a key that has no reducer."""


def state_size(state: Mapping[str, Any]) -> int:
    """Serialised size in bytes, as the stores will write it."""
    return len(json.dumps(state, separators=(",", ":"), default=str).encode())


@record
class Plan:
    """The tasks of a superstep, described rather than listed: each node, with the number of
    items of a map node (``None`` for a plain node). A durable worker checks its one task
    against the plan, and counts the plan, in time that does not grow with a map's length;
    iterating lists the tasks in merge order, as :func:`plan_tasks` does."""

    sizes: Mapping[str, int | None]
    sends: tuple[Send, ...] = ()
    """The items sent to this superstep, in the order sent: task ``Task(s.node, i)`` runs
    ``sends[i]`` (on its payload alone). A node may run both ways in one superstep."""

    def __contains__(self, task: object) -> bool:
        return isinstance(task, Task) and self.holds(task.node, task.index)

    def holds(self, node: str, index: int | None) -> bool:
        """Whether the plan has the task of ``node`` (and ``index``): what every hop's slot
        check asks, without making the :class:`Task`."""
        size = self.sizes.get(node)
        if size is not None:  # a map node: its items
            return index is not None and 0 <= index < size
        if index is None:
            return node in self.sizes
        return 0 <= index < len(self.sends) and self.sends[index].node == node

    count: int = field(init=False, compare=False, repr=False)
    """How many tasks: counted once, since every hop asks (the slot check, the close)."""
    nodes: tuple[str, ...] = field(init=False, compare=False, repr=False)
    """Its nodes by name (the order their tasks start and merge in): sorted once."""
    plain: bool = field(init=False, compare=False, repr=False)
    """No map node and no item sent: one task per node."""
    parallel: bool = field(init=False, compare=False, repr=False)
    """More than one task: each commits a task record, and the last one closes."""

    def __post_init__(self) -> None:
        count = sum(1 if size is None else size for size in self.sizes.values())
        object.__setattr__(self, "count", count + len(self.sends))
        object.__setattr__(self, "parallel", self.count > 1)
        object.__setattr__(self, "nodes", tuple(sorted(self.sizes)))
        plain = not self.sends and all(size is None for size in self.sizes.values())
        object.__setattr__(self, "plain", plain)

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Task]:
        nodes = self.nodes
        yield from (Task(node) for node in nodes if self.sizes[node] is None)
        for node in nodes:
            size = self.sizes[node]
            if size is not None:
                yield from (Task(node, i) for i in range(size))
        yield from (Task(send.node, i) for i, send in enumerate(self.sends))

    def payload(self, task: Task) -> Mapping[str, Any] | None:
        """What a sent task runs on; ``None`` for a task that was not sent."""
        if task.index is None or task not in self or self.sizes.get(task.node) is not None:
            return None
        return self.sends[task.index].payload


def plan_of(
    graph: Graph,
    nodes: Iterable[str],
    state: Mapping[str, Any],
    sends: Iterable[Send | Mapping[str, Any]] = (),
) -> Plan:
    """The plan that runs ``nodes`` on ``state``, and the items ``sends`` (as the closing
    superstep recorded them: :attr:`Closed.sends`, as objects or their ``to_dict`` form).

    A map node over an empty list has no task: like LangGraph's ``Send`` over nothing, that
    branch ends there. Raises :class:`ReducerError` if a map's key does not hold a list."""
    if not sends:  # plain nodes plan the same on any state: once per graph (Graph.plans)
        key = nodes if isinstance(nodes, tuple) else tuple(nodes)
        cached = graph.plans.get(key)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        if graph.mapped.isdisjoint(key):
            plan = _plan(graph, key, state, ())
            if len(graph.plans) < MAX_CACHED_PLANS:
                graph.plans[key] = plan
            return plan
        nodes = key
    return _plan(graph, nodes, state, sends)


MAX_CACHED_PLANS = 1024
"""Plans a graph keeps (:attr:`Graph.plans`): each set of plain nodes a superstep ran once;
a graph whose fan-outs combine in more ways plans the rest each time."""


def _plan(
    graph: Graph, nodes: Iterable[str], state: Mapping[str, Any],
    sends: Iterable[Send | Mapping[str, Any]],
) -> Plan:  # fmt: skip
    sizes: dict[str, int | None] = {}
    for node in set(nodes):
        spec = graph.nodes[node].map
        if spec is None:
            sizes[node] = None
            continue
        found = state.get(spec.over)
        if not isinstance(found, list):
            kind = "nothing" if found is None else type(found).__name__
            raise ReducerError(f"map node {node!r} runs over {spec.over!r}, which holds {kind}, "
                               "not a list")  # fmt: skip
        if found:
            sizes[node] = len(found)
    items = tuple(s if isinstance(s, Send) else Send.from_dict(s) for s in sends) if sends else ()
    return Plan(MappingProxyType(sizes), items)


def plan_tasks(
    graph: Graph,
    nodes: Iterable[str],
    state: Mapping[str, Any],
    sends: Iterable[Send | Mapping[str, Any]] = (),
) -> list[Task]:
    """The tasks that run ``nodes`` and ``sends`` on ``state``, in merge order
    (:func:`plan_of`)."""
    return list(plan_of(graph, nodes, state, sends))


def task_input(
    graph: Graph, task: Task, state: Mapping[str, Any], plan: Plan | None = None
) -> Mapping[str, Any]:
    """What the task's tool sees (a :class:`~engine.state_view.StateView`: what it reads is
    its own): the state, plus its item under the map's ``as`` name; a task sent an item
    (``plan.sends``) sees that item's payload alone, as in LangGraph. Raises
    :class:`ReducerError` for a sent task without the plan that sent it."""
    if task.index is None:
        return StateView(state)
    spec = graph.nodes[task.node].map
    if spec is not None:
        return StateView({**state, spec.as_: state[spec.over][task.index]})
    payload = plan.payload(task) if plan is not None else None
    if payload is None:
        raise ReducerError(f"task {task.key!r} was not sent in its superstep's plan")
    return StateView(payload)


@record
class TaskResult:
    """A task's outcome: its updates and where it routes, or the error that failed it."""

    task: Task
    tool: str
    updates: dict[str, Any]
    targets: Targets
    duration_ms: float
    error: str | None = None
    sends: tuple[Send, ...] = ()
    """The items its router or Command sent to the next superstep, in order."""
    child_run_id: str | None = None
    """A subgraph node's task: the child run that did its work (:mod:`engine.subgraphs`)."""
    merged: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    """The state it ran on with its own updates merged (what it routed on): the state after
    its superstep when it is the superstep's only task, so the close need not merge again."""
    raised: Raised | None = None
    """A failed tool: what it raised, for its node's retry policy (``None``: the task did not
    fail, or failed in the engine, which a retry would not change)."""
    asked: Interrupt | None = None
    """Its tool asked a person (``ctx.interrupt``): the task pauses with ``updates`` held,
    unrouted until the answer comes (:mod:`engine.pauses`)."""

    @property
    def ok(self) -> bool:
        return self.error is None


def run_task(
    graph: Graph,
    tools: Toolkit,
    task: Task,
    state: Mapping[str, Any],
    ctx: ToolContext,
    plan: Plan | None = None,
) -> TaskResult:
    """Run ``task`` on ``state`` and route it on the state its own updates leave (as
    LangGraph routes a node: on its input updated with its own writes). ``plan``: its
    superstep's, needed by a task that was sent an item (:func:`task_input`)."""
    node = graph.nodes[task.node]
    if node.settings and ctx.settings is not node.settings:
        ctx = replace(ctx, settings=node.settings)
    started = time.perf_counter()
    try:
        view = task_input(graph, task, state, plan)
        if node.wait is not None:  # a wait node: its hop came at its time; it runs nothing
            wakes_at(node.wait, view, 0.0)  # its time must be readable (WaitError)
            updates: dict[str, Any] = {}
            goto: Goto | Interrupt | None = None
        else:
            updates, goto = call_tool_command(tools.get(node.tool), view, ctx,
                                              node.failure.timeout_s)  # fmt: skip
    except WaitError as exc:
        return _result(task, node, started, {}, (), f"wait node {task.node!r}: {exc}")
    except ToolError as exc:
        cause = exc.__cause__
        raised = raised_from(cause) if cause is not None else None
        return _result(task, node, started, {}, (), str(exc), raised=raised)
    except (UnknownToolError, ReducerError) as exc:
        return _result(task, node, started, {}, (), str(exc))
    if isinstance(goto, Interrupt):  # it asks: routed once answered (engine/pauses.py)
        return replace(_result(task, node, started, updates, (), None), asked=goto)
    merged: dict[str, Any] | None = None
    try:
        merged = _merge_own(graph, state, task, updates)
        targets, sends = _routes(graph, tools, task.node, merged, goto)
    except (ReducerError, ConditionEvaluationError, NoRouteError) as exc:
        error = f"routing after {task.key!r} failed: {exc}"
        return _result(task, node, started, updates, (), error, merged=merged)
    return _result(task, node, started, updates, targets, None, sends, merged=merged)


def _result(
    task: Task, node: Node, started: float, updates: dict[str, Any], targets: Targets,
    error: str | None, sends: tuple[Send, ...] = (), *, raised: Raised | None = None,
    merged: dict[str, Any] | None = None,
) -> TaskResult:  # fmt: skip
    """A task's result, timed from ``started`` (``time.perf_counter``)."""
    # To the microsecond: round() to an int, then divided, costs half of round(x, 3).
    ms = round((time.perf_counter() - started) * 1_000_000) / 1000
    # Positional (child_run_id None): every task makes one, and keywords cost more.
    return TaskResult(task, node.tool, updates, targets, ms, error, sends, None, merged, raised)


def _merge_own(
    graph: Graph, state: Mapping[str, Any], task: Task, updates: Mapping[str, Any]
) -> dict[str, Any]:
    """``state`` with one task's own ``updates`` merged (:func:`merge_updates`, which a lone
    writer cannot conflict in): a plain copy over it when no key it wrote has a reducer."""
    if not graph.reducers or graph.reducers.keys().isdisjoint(updates):
        return {**state, **updates}
    return merge_updates(graph, state, [(task, updates)])


def routed(
    graph: Graph,
    tools: Toolkit,
    task: Task,
    state: Mapping[str, Any],
    updates: dict[str, Any],
    duration_ms: float,
    child_run_id: str | None = None,
) -> TaskResult:
    """The result of a task whose work was done elsewhere (a subgraph node's child run),
    routed as :func:`run_task` routes a tool's updates."""
    node = graph.nodes[task.node]
    try:
        own = merge_updates(graph, state, [(task, updates)])
        targets, sends = _routes(graph, tools, task.node, own, None)
    except (ReducerError, ConditionEvaluationError, NoRouteError) as exc:
        error = f"routing after {task.key!r} failed: {exc}"
        return TaskResult(task, node.tool, updates, (), duration_ms, error,
                          child_run_id=child_run_id)  # fmt: skip
    return TaskResult(task, node.tool, updates, targets, duration_ms, None, sends, child_run_id)


def _routes(
    graph: Graph, tools: Toolkit, node: str, state: Mapping[str, Any], goto: Goto | None
) -> tuple[Targets, tuple[Send, ...]]:
    """Where a task goes: its node's edge or branch, its router, and its Command's goto."""
    branch = graph.branches.get(node)
    if goto is None and (branch is None or branch.router is None):  # an edge or a branch
        found = graph.targets(node, state)
        return (found if len(found) < 2 else tuple(dict.fromkeys(found))), ()
    targets = list(graph.targets(node, state))
    sends: list[Send] = []
    if branch is not None and branch.router is not None:
        try:
            chosen = tools.get_router(branch.router)(state)
        except UnknownToolError:
            raise NoRouteError(f"router {branch.router!r} is not registered") from None
        except Exception as exc:  # a router's failure is the task's, as a tool's is
            told = f"router {branch.router!r} raised {type(exc).__name__}: {exc}"
            raise NoRouteError(bounded_text(told)) from exc
        _resolve(chosen, branch.to, f"router {branch.router!r}", targets, sends)
    if goto is not None:
        allowed = graph.nodes[node].goto
        if not allowed:
            raise NoRouteError(f'its tool returned a Command with a goto, and node {node!r} '
                               'declares none: add "goto": [<the nodes it may go to>]')  # fmt: skip
        _resolve(goto, allowed, f"the Command of node {node!r}", targets, sends)
    return tuple(dict.fromkeys(targets)), tuple(sends)


def _resolve(
    chosen: Any, allowed: Targets, who: str, targets: list[str], sends: list[Send]
) -> None:
    """Check what a router or a Command chose against where it may go, into ``targets``
    (nodes, END) and ``sends``."""
    items = chosen if isinstance(chosen, list | tuple) else [chosen]
    for item in items:
        if isinstance(item, Send):
            if item.node not in allowed or item.node == END:
                raise NoRouteError(f"{who} sent to {item.node!r}, which is not among where it "
                                   f"may go ({', '.join(allowed)})")  # fmt: skip
            if not isinstance(item.payload, Mapping):
                kind = type(item.payload).__name__
                raise NoRouteError(f"{who} sent {kind} to {item.node!r}: a payload is an object")
            try:  # it is recorded with the superstep, and rebuilt from that record
                json.dumps(item.payload)
            except (TypeError, ValueError) as exc:
                raise NoRouteError(f"{who} sent {item.node!r} a payload that is not JSON: "
                                   f"{exc}") from None  # fmt: skip
            sends.append(Send(item.node, dict(item.payload)))
        elif isinstance(item, str):
            name = canonical_target(item)
            if name not in allowed:
                raise NoRouteError(f"{who} chose {name!r}, which is not among where it may go "
                                   f"({', '.join(allowed)})")  # fmt: skip
            targets.append(name)
        else:
            raise NoRouteError(f"{who} returned {type(item).__name__}: a node name, END, or a "
                               "Send (or a list of them)")  # fmt: skip


def merge_updates(
    graph: Graph,
    state: Mapping[str, Any],
    updates: Sequence[tuple[Task, Mapping[str, Any]]],
    writers: dict[str, Task] | None = None,
) -> dict[str, Any]:
    """``state`` with every task's updates merged through the reducers, in the given order.

    Raises :class:`WriteConflictError` when two tasks wrote a key that has no reducer.
    ``writers``: the first writer of each such key so far, kept across calls (updated), when
    a superstep's updates merge in several parts (:class:`Merging`)."""
    merged = dict(state)
    writers = {} if writers is None else writers
    for task, changes in updates:
        for key, value in changes.items():
            name = graph.reducers.get(key)
            if name is None:
                first = writers.setdefault(key, task)
                if first is not task and first != task:
                    raise WriteConflictError(_conflict(key, first, task))
                merged[key] = value
            else:
                merged[key] = graph.reducer(name)(merged.get(key), value)
    return merged


def _conflict(key: str, first: Task, second: Task) -> str:
    return (
        f"{first.key!r} and {second.key!r} both wrote {key!r} in the same superstep and it "
        f'has no reducer; declare one in the graph: "state": {{"{key}": {{"reducer": '
        '"append"}} (or another reducer)'
    )


@record
class Closed:
    """A superstep once all its tasks are done: the state after it and what runs next."""

    state: dict[str, Any]
    next_nodes: tuple[str, ...]
    joins: Joins = field(default_factory=lambda: NO_JOINS)
    end: RunEnd | None = None
    """Set when the superstep ends the run."""
    sends: tuple[Send, ...] = ()
    """The items the next superstep runs besides ``next_nodes`` (``plan_of(..., sends)``),
    in the order sent; a durable run records them with the superstep that closes."""
    deferred: tuple[str, ...] = ()
    """Deferred nodes reached and waiting for nothing else to be left to run: pass them to
    the next :func:`close_superstep`."""


@dataclass(slots=True)
class Merging:
    """A superstep's results merged so far, in merge order: all of them at once
    (:func:`close_superstep`), or part by part, as a wide superstep's close reads its task
    records page by page (:mod:`engine.fold`). Feed it with :func:`merge_in` and close with
    :func:`close_merging`: the outcome is the same however the results were split."""

    state: dict[str, Any]
    """The state before the superstep with the results so far merged in."""
    writers: dict[str, Task] = field(default_factory=dict)
    """The first writer of each key without a reducer (a second one is a conflict)."""
    failed: str | None = None
    """The first failed task's error, as the run's: it fails the superstep whatever else."""
    error: str | None = None
    """The first merge error (a write conflict, a reducer's): the state stops merging."""
    targets: set[str] = field(default_factory=set)
    """Where the tasks routed (END included)."""
    ran: set[str] = field(default_factory=set)
    """The nodes whose tasks ran."""
    sends: list[Send] = field(default_factory=list)
    """The items sent, in merge order."""


def _merged_lone(result: TaskResult, merged: dict[str, Any]) -> Merging:
    """The merging of a superstep whose one task is ``result``, which merged its own updates
    into ``merged`` to route (:attr:`TaskResult.merged`): nothing left to merge."""
    merging = Merging(merged)
    _note(merging, result)
    return merging


def _note(merging: Merging, result: TaskResult) -> None:
    """What ``result`` adds to ``merging`` besides its updates: where it routed, its node,
    the items it sent, and its failure if it is the first."""
    merging.ran.add(result.task.node)
    merging.targets.update(result.targets)
    merging.sends.extend(result.sends)
    if result.error is not None and merging.failed is None:
        merging.failed = f"task {result.task.key!r}: {result.error}"


def merge_in(graph: Graph, merging: Merging, ordered: Sequence[TaskResult]) -> None:
    """Merge ``ordered`` (the next results in merge order, after those merged so far) into
    ``merging``."""
    for result in ordered:
        _note(merging, result)
    if merging.failed is not None or merging.error is not None:
        return
    try:
        merging.state = merge_updates(
            graph, merging.state, [(r.task, r.updates) for r in ordered], merging.writers
        )
    except ReducerError as exc:
        merging.error = str(exc)


def close_superstep(
    graph: Graph,
    state: dict[str, Any],
    joins: Joins,
    results: Sequence[TaskResult],
    superstep: int,
    max_supersteps: int,
    state_limit_bytes: int | None = None,
    deferred: Iterable[str] = (),
) -> Closed:
    """Merge ``results`` (any order: they are sorted, :func:`merge_key`) into ``state`` and
    route onwards. ``deferred``: the previous close's :attr:`Closed.deferred`.

    The run fails if a task failed, if two tasks wrote an unreduced key, if an item was sent
    to a map node, or if the merged state is over ``state_limit_bytes`` (each time keeping
    the state before the superstep), or if the next superstep would pass ``max_supersteps``.
    When nothing else is left to run, the deferred nodes run; once not even they are, the
    run completes, unless a join still waits for a node that was routed past and no task
    chose END: then it fails, rather than end without the join."""
    lone = results[0].merged if len(results) == 1 else None
    if lone is not None:  # a lone task, which merged its own updates to route
        merging = _merged_lone(results[0], lone)
    else:
        ordered = sorted(results, key=lambda r: merge_key(graph, r.task))
        merging = Merging(state)
        merge_in(graph, merging, ordered)
    return close_merging(graph, state, joins, merging, superstep, max_supersteps,
                         state_limit_bytes, deferred)  # fmt: skip


def close_merging(
    graph: Graph,
    state: dict[str, Any],
    joins: Joins,
    merging: Merging,
    superstep: int,
    max_supersteps: int,
    state_limit_bytes: int | None = None,
    deferred: Iterable[str] = (),
) -> Closed:
    """Close a superstep whose results are all merged into ``merging`` (``state``: the state
    before it), as :func:`close_superstep` says."""
    if merging.failed is not None:
        return Closed(state, (), joins, RunEnd("failed", merging.failed))
    if merging.error is not None:
        return Closed(state, (), joins, RunEnd("failed", merging.error))
    merged = merging.state
    size = state_size(merged) if state_limit_bytes is not None else 0
    if state_limit_bytes is not None and size > state_limit_bytes:
        reason = (
            f"state after superstep {superstep} would be {size} bytes serialized, above the "
            f"limit of {state_limit_bytes}; the last committed state is kept"
        )
        return Closed(state, (), joins, RunEnd("failed", reason))
    sends = tuple(merging.sends)
    mapped = next((s.node for s in sends if s.node in graph.mapped), None) if sends else None
    if mapped is not None:
        reason = (f"an item was sent to {mapped!r}, a map node: it runs over its list; send "
                  "to a plain node")  # fmt: skip
        return Closed(state, (), joins, RunEnd("failed", reason))
    targets, joins = _next_nodes(graph, merging.targets, merging.ran, joins)
    nodes, waiting = _deferring(graph, (*targets, *deferred), bool(sends), merged)
    if not nodes and not sends:
        return Closed(merged, (), joins, _end(joins, END in merging.targets))
    if superstep + 1 >= max_supersteps:
        names = ", ".join(map(repr, dict.fromkeys([*nodes, *(s.node for s in sends)])))
        reason = (
            f"step limit reached: {max_supersteps} supersteps ran without reaching END (next "
            f"would have run {names}); raise max_steps or check the loop"
        )
        return Closed(merged, nodes, joins, RunEnd("failed", reason), sends, waiting)
    return Closed(merged, nodes, joins, None, sends, waiting)


def _deferring(
    graph: Graph, candidates: Sequence[str], sending: bool, state: Mapping[str, Any]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The nodes that run next, and the deferred ones that wait: these run, each once, when
    nothing else would (LangGraph runs a deferred node when the run is about to end). A map
    over an empty list runs nothing: that branch ends here, and the next superstep is
    whatever else is left (so every runner plans the same)."""
    if graph.mapped.isdisjoint(candidates) and graph.deferrable.isdisjoint(candidates):
        # plain nodes (every chain step, whose one node needs no sorting): all ready
        return tuple(candidates) if len(candidates) < 2 else tuple(sorted(set(candidates))), ()
    unique = sorted(n for n in set(candidates) if _has_tasks(graph, n, state))
    ready = tuple(n for n in unique if not graph.nodes[n].defer)
    later = tuple(n for n in unique if graph.nodes[n].defer)
    if ready or sending:
        return ready, later
    return later, ()


def _has_tasks(graph: Graph, node: str, state: Mapping[str, Any]) -> bool:
    """False for a map node over an empty list; a map over a non-list is kept, and its plan
    fails the run saying so (:func:`plan_of`)."""
    spec = graph.nodes[node].map
    return spec is None or state.get(spec.over) != []


def _end(joins: Joins, chose_end: bool) -> RunEnd:
    """Nothing is left to run: the run completes, unless a join still waits and no task
    chose END (a routed fan-out skipped one of its branches: it would never run)."""
    if not joins or chose_end:
        return RunEnd("completed")
    join, seen = sorted(joins.items())[0]
    reason = (
        f"nothing is left to run, and join {join!r} still waits (it has seen "
        f"{', '.join(map(repr, sorted(seen)))}): a branch it waits for was routed past. "
        f'Mark {join!r} "defer": true to run it once the others are done, whichever ran, '
        "or route to END to finish without it"
    )
    return RunEnd("failed", reason)


def _next_nodes(
    graph: Graph, routed: set[str], ran: set[str], joins: Joins
) -> tuple[tuple[str, ...], Joins]:
    if not graph.joins and not joins:  # no join to wait for (every chain step)
        if len(routed) == 1:  # one target: nothing to sort
            return () if END in routed else tuple(routed), NO_JOINS
        return tuple(sorted({t for t in routed if t != END})), NO_JOINS
    targets: dict[str, None] = dict.fromkeys(t for t in routed if t != END)
    progress = dict(joins)
    for join, awaited in graph.joins.items():
        seen = progress.get(join, frozenset()) | (ran & set(awaited))
        if seen >= set(awaited):
            targets[join] = None
            seen = frozenset()
        progress[join] = seen
    return tuple(sorted(targets)), MappingProxyType({k: v for k, v in progress.items() if v})


def routes_after(
    graph: Graph, tools: Toolkit, node: str, state: Mapping[str, Any]
) -> tuple[Targets, tuple[Send, ...]]:
    """Where ``node`` routes on ``state`` (its edge, branch or router), as if its task had
    just left that state: a state update written as that node (:mod:`engine.history`)."""
    return _routes(graph, tools, node, state, None)
