"""Supersteps: the semantics of parallel branches, maps and joins, as pure functions.

A run advances in supersteps (LangGraph's Pregel model). Superstep k runs a set of tasks,
each one node on the state after superstep k-1 (a map node: one task per item of a state
list). When all of them are done, :func:`close_superstep` merges their updates through each
key's reducer, in a deterministic order (node name, then item index), and picks the next
superstep's nodes: the targets the tasks routed to, each node once, plus every join whose
awaited nodes have all run since it last ran.

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
from engine.graph import END, Graph, NoRouteError, Targets
from engine.ports import RunEnd
from engine.reducers import REDUCERS, ReducerError
from engine.tools import ToolContext, ToolError, Toolkit, call_tool

Joins = Mapping[str, frozenset[str]]
"""Join node -> the nodes it waits for that have run since it last ran."""
NO_JOINS: Joins = MappingProxyType({})


@dataclass(frozen=True, slots=True, order=True)
class Task:
    """One unit of work of a superstep: a node, and for a map node the item's index."""

    node: str
    index: int | None = None

    @property
    def key(self) -> str:
        """How logs and events name the task: ``grade[3]`` for a map item, else the node."""
        return self.node if self.index is None else f"{self.node}[{self.index}]"

    def sort_key(self) -> tuple[str, int]:
        return (self.node, -1 if self.index is None else self.index)


class WriteConflictError(ReducerError):
    """Two tasks of one superstep wrote a key that has no reducer."""


def state_size(state: Mapping[str, Any]) -> int:
    """Serialised size in bytes, as the stores will write it."""
    return len(json.dumps(state, separators=(",", ":"), default=str).encode())


@dataclass(frozen=True, slots=True)
class Plan:
    """The tasks of a superstep, described rather than listed: each node, with the number of
    items of a map node (``None`` for a plain node). A durable worker checks its one task
    against the plan, and counts the plan, in time that does not grow with a map's length;
    iterating lists the tasks in merge order, as :func:`plan_tasks` does."""

    sizes: Mapping[str, int | None]

    def __contains__(self, task: object) -> bool:
        if not isinstance(task, Task) or task.node not in self.sizes:
            return False
        size = self.sizes[task.node]
        if size is None:
            return task.index is None
        return task.index is not None and 0 <= task.index < size

    def __len__(self) -> int:
        return sum(1 if size is None else size for size in self.sizes.values())

    def __iter__(self) -> Iterator[Task]:
        for node in sorted(self.sizes):
            size = self.sizes[node]
            if size is None:
                yield Task(node)
            else:
                yield from (Task(node, i) for i in range(size))


def plan_of(graph: Graph, nodes: Iterable[str], state: Mapping[str, Any]) -> Plan:
    """The plan that runs ``nodes`` on ``state``.

    A map node over an empty list has no task: like LangGraph's ``Send`` over nothing, that
    branch ends there. Raises :class:`ReducerError` if a map's key does not hold a list."""
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
    return Plan(MappingProxyType(sizes))


def plan_tasks(graph: Graph, nodes: Iterable[str], state: Mapping[str, Any]) -> list[Task]:
    """The tasks that run ``nodes`` on ``state``, in merge order (:func:`plan_of`)."""
    return list(plan_of(graph, nodes, state))


def task_input(graph: Graph, task: Task, state: Mapping[str, Any]) -> Mapping[str, Any]:
    """What the task's tool sees: the state, plus its item under the map's ``as`` name."""
    spec = graph.nodes[task.node].map
    if spec is None or task.index is None:
        return MappingProxyType(state)
    return MappingProxyType({**state, spec.as_: state[spec.over][task.index]})


@dataclass(frozen=True, slots=True)
class TaskResult:
    """A task's outcome: its updates and where it routes, or the error that failed it."""

    task: Task
    tool: str
    updates: dict[str, Any]
    targets: Targets
    duration_ms: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def run_task(
    graph: Graph, tools: Toolkit, task: Task, state: Mapping[str, Any], ctx: ToolContext
) -> TaskResult:
    """Run ``task`` on ``state`` and route it on the state its own updates leave (as
    LangGraph routes a node: on its input updated with its own writes)."""
    node = graph.nodes[task.node]
    if node.settings:
        ctx = replace(ctx, settings=node.settings)
    started = time.perf_counter()

    def result(updates: dict[str, Any], targets: Targets, error: str | None) -> TaskResult:
        ms = round((time.perf_counter() - started) * 1000, 3)
        return TaskResult(task, node.tool, updates, targets, ms, error)

    try:
        updates = call_tool(tools.get(node.tool), task_input(graph, task, state), ctx) or {}
    except (ToolError, UnknownToolError) as exc:
        return result({}, (), str(exc))
    try:
        own = merge_updates(graph, state, [(task, updates)])
        targets = graph.targets(task.node, own)
    except (ReducerError, ConditionEvaluationError, NoRouteError) as exc:
        return result(updates, (), f"routing after {task.key!r} failed: {exc}")
    return result(updates, targets, None)


def merge_updates(
    graph: Graph, state: Mapping[str, Any], updates: Sequence[tuple[Task, Mapping[str, Any]]]
) -> dict[str, Any]:
    """``state`` with every task's updates merged through the reducers, in the given order.

    Raises :class:`WriteConflictError` when two tasks wrote a key that has no reducer."""
    merged = dict(state)
    writers: dict[str, Task] = {}
    for task, changes in updates:
        for key, value in changes.items():
            name = graph.reducers.get(key)
            if name is None:
                first = writers.setdefault(key, task)
                if first != task:
                    raise WriteConflictError(_conflict(key, first, task))
                merged[key] = value
            else:
                merged[key] = REDUCERS[name](merged.get(key), value)
    return merged


def _conflict(key: str, first: Task, second: Task) -> str:
    return (
        f"{first.key!r} and {second.key!r} both wrote {key!r} in the same superstep and it "
        f'has no reducer; declare one in the graph: "state": {{"{key}": {{"reducer": '
        '"append"}} (or another reducer)'
    )


@dataclass(frozen=True, slots=True)
class Closed:
    """A superstep once all its tasks are done: the state after it and what runs next."""

    state: dict[str, Any]
    next_nodes: tuple[str, ...]
    joins: Joins = field(default_factory=lambda: NO_JOINS)
    end: RunEnd | None = None
    """Set when the superstep ends the run."""


def close_superstep(
    graph: Graph,
    state: dict[str, Any],
    joins: Joins,
    results: Sequence[TaskResult],
    superstep: int,
    max_supersteps: int,
    state_limit_bytes: int | None = None,
) -> Closed:
    """Merge ``results`` (any order: they are sorted) into ``state`` and route onwards.

    The run fails if a task failed, if two tasks wrote an unreduced key, or if the merged
    state is over ``state_limit_bytes`` (each time keeping the state before the superstep),
    or if the next superstep would pass ``max_supersteps``; it completes when no node is
    left to run."""
    ordered = sorted(results, key=lambda r: r.task.sort_key())
    failed = next((r for r in ordered if not r.ok), None)
    if failed is not None:
        return Closed(
            state, (), joins, RunEnd("failed", f"task {failed.task.key!r}: {failed.error}")
        )
    try:
        merged = merge_updates(graph, state, [(r.task, r.updates) for r in ordered])
    except ReducerError as exc:
        return Closed(state, (), joins, RunEnd("failed", str(exc)))
    size = state_size(merged) if state_limit_bytes is not None else 0
    if state_limit_bytes is not None and size > state_limit_bytes:
        reason = (
            f"state after superstep {superstep} would be {size} bytes serialized, above the "
            f"limit of {state_limit_bytes}; the last committed state is kept"
        )
        return Closed(state, (), joins, RunEnd("failed", reason))
    nodes, joins = _next_nodes(graph, ordered, joins)
    if not nodes:
        return Closed(merged, (), joins, RunEnd("completed"))
    if superstep + 1 >= max_supersteps:
        reason = (
            f"step limit reached: {max_supersteps} supersteps ran without reaching END (next "
            f"would have run {', '.join(map(repr, nodes))}); raise max_steps or check the loop"
        )
        return Closed(merged, nodes, joins, RunEnd("failed", reason))
    return Closed(merged, nodes, joins)


def _next_nodes(
    graph: Graph, results: Sequence[TaskResult], joins: Joins
) -> tuple[tuple[str, ...], Joins]:
    targets: dict[str, None] = {}
    ran = {r.task.node for r in results}
    for result in results:
        targets.update(dict.fromkeys(t for t in result.targets if t != END))
    progress = dict(joins)
    for join, awaited in graph.joins.items():
        seen = progress.get(join, frozenset()) | (ran & set(awaited))
        if seen >= set(awaited):
            targets[join] = None
            seen = frozenset()
        progress[join] = seen
    return tuple(sorted(targets)), MappingProxyType({k: v for k, v in progress.items() if v})
