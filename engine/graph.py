"""The validated, immutable graph and its routing.

A :class:`Graph` is built only by :func:`engine.validation.build_graph`, which checks the
whole definition once; routing at run time then trusts it and does no checks of its own.
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


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    tool: str
    settings: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class Case:
    condition: Condition
    target: str


@dataclass(frozen=True, slots=True)
class Branch:
    """Ordered ``(condition, target)`` cases; the first that holds wins, else ``default``."""

    cases: tuple[Case, ...]
    default: str | None = None

    def route(self, node: str, state: Mapping[str, Any]) -> str:
        for case in self.cases:
            if case.condition(state):
                return case.target
        if self.default is None:
            conditions = ", ".join(repr(c.condition.source) for c in self.cases)
            raise NoRouteError(f"no branch of node {node!r} matched ({conditions}) and no default")
        return self.default


Router = Callable[[Mapping[str, Any]], str]


@dataclass(frozen=True)
class Graph:
    """A validated graph. Treat as immutable; build it with ``build_graph``."""

    name: str
    entry: str
    nodes: Mapping[str, Node]
    edges: Mapping[str, str]
    branches: Mapping[str, Branch]
    max_steps: int | None = None
    _routers: Mapping[str, Router] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        routers: dict[str, Router] = {}
        for node_id, target in self.edges.items():
            routers[node_id] = _constant(target)
        for node_id, branch in self.branches.items():
            routers[node_id] = _branching(node_id, branch)
        object.__setattr__(self, "_routers", MappingProxyType(routers))

    def next_node(self, node: str, state: Mapping[str, Any]) -> str:
        """Where the run goes after ``node``, given the state after the node's step."""
        return self._routers[node](state)

    def successors(self, node: str) -> tuple[str, ...]:
        if node in self.edges:
            return (self.edges[node],)
        branch = self.branches.get(node)
        if branch is None:
            return ()
        targets = [case.target for case in branch.cases]
        if branch.default is not None:
            targets.append(branch.default)
        return tuple(dict.fromkeys(targets))

    def to_dict(self) -> dict[str, Any]:
        """The canonical JSON form; ``build_graph(g.to_dict())`` gives an equal graph."""
        doc: dict[str, Any] = {
            "name": self.name,
            "entry": self.entry,
            "nodes": {n.id: _node_doc(n) for n in self.nodes.values()},
            "edges": dict(self.edges),
            "branches": {k: _branch_doc(b) for k, b in self.branches.items()},
        }
        if self.max_steps is not None:
            doc["max_steps"] = self.max_steps
        return doc


def _constant(target: str) -> Router:
    return lambda _state: target


def _branching(node_id: str, branch: Branch) -> Router:
    return lambda state: branch.route(node_id, state)


def _node_doc(node: Node) -> dict[str, Any]:
    doc: dict[str, Any] = {"tool": node.tool}
    if node.settings:
        doc["settings"] = dict(node.settings)
    return doc


def _branch_doc(branch: Branch) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "cases": [{"when": c.condition.source, "to": c.target} for c in branch.cases]
    }
    if branch.default is not None:
        doc["default"] = branch.default
    return doc
