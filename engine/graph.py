"""The validated, immutable graph and its routing.

A :class:`Graph` is built only by :func:`engine.validation.build_graph`, which checks the
whole definition once; routing at run time then trusts it and does no checks of its own.

Routing gives *targets*: a plain edge or a branch case may name several nodes (a fan-out),
and each of them runs in the next superstep. A node may also be a *map* (it runs once per
item of a state list) and a *join* (it waits for every node it names, across supersteps);
state keys may declare reducers. :mod:`engine.superstep` applies these rules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from engine.conditions import Condition
from engine.errors import HopgraphError

END = "END"
END_ALIASES = frozenset({"END", "end"})


def canonical_target(target: str) -> str:
    """``end`` and ``END`` both end a run; the canonical form is ``END``."""
    return END if target in END_ALIASES else target


class NoRouteError(HopgraphError):
    """A branch without a default matched none of its cases."""


Targets = tuple[str, ...]
"""Where routing goes: one node, several (a fan-out), or ``(END,)``."""


@dataclass(frozen=True, slots=True)
class MapSpec:
    """A node that runs once per item of the list ``state[over]``, each task seeing its item
    as ``state[as_]``; at most ``max_concurrency`` of its tasks run at once."""

    over: str
    as_: str
    max_concurrency: int | None = None

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"over": self.over, "as": self.as_}
        if self.max_concurrency is not None:
            doc["max_concurrency"] = self.max_concurrency
        return doc


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    tool: str
    settings: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    map: MapSpec | None = None


@dataclass(frozen=True, slots=True)
class Case:
    condition: Condition
    targets: Targets


@dataclass(frozen=True, slots=True)
class Branch:
    """Ordered ``(condition, targets)`` cases; the first that holds wins, else ``default``."""

    cases: tuple[Case, ...]
    default: Targets | None = None

    def route(self, node: str, state: Mapping[str, Any]) -> Targets:
        for case in self.cases:
            if case.condition(state):
                return case.targets
        if self.default is None:
            conditions = ", ".join(repr(c.condition.source) for c in self.cases)
            raise NoRouteError(f"no branch of node {node!r} matched ({conditions}) and no default")
        return self.default


Router = Callable[[Mapping[str, Any]], Targets]


@dataclass(frozen=True)
class Graph:
    """A validated graph. Treat as immutable; build it with ``build_graph``."""

    name: str
    entry: str
    nodes: Mapping[str, Node]
    edges: Mapping[str, Targets]
    branches: Mapping[str, Branch]
    max_steps: int | None = None
    reducers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """State key -> reducer name (:data:`engine.reducers.REDUCERS`); unnamed keys replace."""
    joins: Mapping[str, Targets] = field(default_factory=lambda: MappingProxyType({}))
    """Join node -> the nodes it waits for, each at least once since it last ran."""
    _routers: Mapping[str, Router] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        routers: dict[str, Router] = {}
        for node_id, target in self.edges.items():
            routers[node_id] = _constant(target)
        for node_id, branch in self.branches.items():
            routers[node_id] = _branching(node_id, branch)
        object.__setattr__(self, "_routers", MappingProxyType(routers))

    def targets(self, node: str, state: Mapping[str, Any]) -> Targets:
        """Where the run goes after ``node``, given the state its task left (``()``: nowhere
        but the joins that wait for it)."""
        router = self._routers.get(node)
        return router(state) if router is not None else ()

    def next_node(self, node: str, state: Mapping[str, Any]) -> str:
        """The one node a chain goes to after ``node`` (see :attr:`is_chain`)."""
        (target,) = self.targets(node, state)
        return target

    @property
    def is_chain(self) -> bool:
        """Every step routes to exactly one node or END: no fan-out, map or join. Such a graph
        runs one task per superstep."""
        routes = [*self.edges.values()]
        for branch in self.branches.values():
            routes.extend(c.targets for c in branch.cases)
            if branch.default is not None:
                routes.append(branch.default)
        single = all(len(targets) == 1 for targets in routes)
        return single and not self.joins and all(n.map is None for n in self.nodes.values())

    def successors(self, node: str) -> tuple[str, ...]:
        """Every node (or END) the run may go to after ``node``, joins included."""
        targets: list[str] = list(self.edges.get(node, ()))
        branch = self.branches.get(node)
        if branch is not None:
            for case in branch.cases:
                targets.extend(case.targets)
            targets.extend(branch.default or ())
        targets.extend(join for join, sources in self.joins.items() if node in sources)
        return tuple(dict.fromkeys(targets))

    def to_dict(self) -> dict[str, Any]:
        """The canonical JSON form; ``build_graph(g.to_dict())`` gives an equal graph."""
        doc: dict[str, Any] = {
            "name": self.name,
            "entry": self.entry,
            "nodes": {n.id: _node_doc(n) for n in self.nodes.values()},
            "edges": {k: _targets_doc(t) for k, t in self.edges.items()},
            "branches": {k: _branch_doc(b) for k, b in self.branches.items()},
        }
        if self.reducers:
            doc["state"] = {key: {"reducer": name} for key, name in self.reducers.items()}
        if self.joins:
            doc["joins"] = {k: list(v) for k, v in self.joins.items()}
        if self.max_steps is not None:
            doc["max_steps"] = self.max_steps
        return doc


def _constant(targets: Targets) -> Router:
    return lambda _state: targets


def _targets_doc(targets: Targets) -> str | list[str]:
    """One target as a string (the form every dialect has always used), several as a list."""
    return targets[0] if len(targets) == 1 else list(targets)


def _branching(node_id: str, branch: Branch) -> Router:
    return lambda state: branch.route(node_id, state)


def _node_doc(node: Node) -> dict[str, Any]:
    doc: dict[str, Any] = {"tool": node.tool}
    if node.settings:
        doc["settings"] = dict(node.settings)
    if node.map is not None:
        doc["map"] = node.map.to_dict()
    return doc


def _branch_doc(branch: Branch) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "cases": [{"when": c.condition.source, "to": _targets_doc(c.targets)} for c in branch.cases]
    }
    if branch.default is not None:
        doc["default"] = _targets_doc(branch.default)
    return doc
