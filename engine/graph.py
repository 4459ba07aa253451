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
from engine.interrupt_spec import Question
from engine.reducers import EMPTY, REDUCERS, Reducer, ReducerError
from engine.retry_policy import NO_FAILURE_POLICY, FailurePolicy, failure_doc
from engine.tools import CustomReducer
from engine.wait_spec import WaitSpec

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


SUBGRAPH_TOOL = "graph:"
"""A subgraph node's ``tool`` is this prefix and the graph it runs (as logs show it)."""


@dataclass(frozen=True, slots=True)
class SubgraphSpec:
    """A node that runs another graph as a child run (LangGraph's compiled graph added as a
    node): ``graph`` names it (a graph id once stored), ``input`` maps parent keys to the
    child's input keys and ``output`` child keys to parent keys; without them, the child gets
    the task's view (a map item's child: its item alone) and gives back the keys of its final
    state that the parent's state has (LangGraph's shared keys). :mod:`engine.subgraphs` runs
    it."""

    graph: str
    input: Mapping[str, str] | None = None
    output: Mapping[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"graph": self.graph}
        if self.input is not None:
            doc["input"] = dict(self.input)
        if self.output is not None:
            doc["output"] = dict(self.output)
        return doc


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    tool: str
    settings: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    map: MapSpec | None = None
    defer: bool = False
    """Runs once nothing else is pending (LangGraph's ``defer=True``): however many branches
    lead to it, across however many supersteps, it runs once after all of them."""
    goto: Targets = ()
    """Where its tool may send the run with a :class:`~engine.tools.Command` (besides its
    edges): LangGraph's ``Command[Literal[...]]`` annotation."""
    subgraph: SubgraphSpec | None = None
    """Set for a node that runs another graph (its ``tool`` is ``graph:<id>``)."""
    failure: FailurePolicy = NO_FAILURE_POLICY
    """Its retries, timeout and error route (:mod:`engine.retry_policy`)."""
    wait: WaitSpec | None = None
    """A wait node: it runs no tool, and goes on at its time (:mod:`engine.timers`)."""
    interrupt: Question | None = None
    """An interrupt node: it runs no tool; it asks, and goes on with the answer
    (:mod:`engine.pauses`)."""


@dataclass(frozen=True, slots=True)
class Case:
    condition: Condition
    targets: Targets


@dataclass(frozen=True, slots=True)
class Branch:
    """Ordered ``(condition, targets)`` cases; the first that holds wins, else ``default``.

    Or a registered *router* (``router``, a function of the state; LangGraph's path function)
    that may go to the nodes in ``to`` (its ``path_map``), several at once, or send them
    :class:`~engine.tools.Send` items: :func:`engine.superstep.run_task` calls it."""

    cases: tuple[Case, ...]
    default: Targets | None = None
    router: str | None = None
    to: Targets = ()

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
    custom_reducers: Mapping[str, CustomReducer] = field(
        default_factory=lambda: MappingProxyType({}), repr=False, compare=False
    )
    """The toolkits' reducers the graph was built with (``build_graph(..., toolkit=)``)."""
    interrupt_before: frozenset[str] = frozenset()
    """Static breakpoints: the run pauses before these nodes run (:mod:`engine.pauses`)."""
    interrupt_after: frozenset[str] = frozenset()
    """... and after these ran, before their updates are committed."""
    _routers: Mapping[str, Router] = field(default_factory=dict, repr=False, compare=False)
    mapped: frozenset[str] = field(default=frozenset(), init=False, repr=False, compare=False)
    """The map nodes (derived from ``nodes``; asked at every close)."""
    deferrable: frozenset[str] = field(default=frozenset(), init=False, repr=False,
                                       compare=False)  # fmt: skip
    """The deferred nodes (derived from ``nodes``; asked at every close)."""
    names: frozenset[str] = field(default=frozenset(), init=False, repr=False, compare=False)
    """The nodes' ids (derived from ``nodes``; every hop's slot check asks)."""
    unhooked: frozenset[str] = field(default=frozenset(), init=False, repr=False,
                                     compare=False)  # fmt: skip
    """The nodes that no pause or timer hook acts on at a task's first delivery (nor the
    retry hook, which acts on later attempts only): no interrupt, breakpoint or wait
    (derived; asked at every hop)."""
    plans: dict[tuple[str, ...], Any] = field(default_factory=dict, init=False, repr=False,
                                              compare=False)  # fmt: skip
    """Plans of plain nodes, by the nodes planned (:func:`engine.superstep.plan_of`): such a
    plan depends on its nodes alone, and every hop's slot check and every close asks for
    one, so each is made once per graph."""

    def __post_init__(self) -> None:
        routers: dict[str, Router] = {}
        for node_id, target in self.edges.items():
            routers[node_id] = _constant(target)
        for node_id, branch in self.branches.items():
            if branch.router is None:
                routers[node_id] = _branching(node_id, branch)
        object.__setattr__(self, "_routers", MappingProxyType(routers))
        nodes = self.nodes.values()
        object.__setattr__(self, "mapped", frozenset(n.id for n in nodes if n.map is not None))
        object.__setattr__(self, "deferrable", frozenset(n.id for n in nodes if n.defer))
        object.__setattr__(self, "names", frozenset(self.nodes))
        stops = self.interrupt_before | self.interrupt_after
        unhooked = frozenset(
            n.id for n in nodes
            if n.interrupt is None and n.wait is None and n.id not in stops
        )  # fmt: skip
        object.__setattr__(self, "unhooked", unhooked)

    def reducer(self, name: str) -> Reducer:
        """The reducer a ``state`` key names: built in, or registered by a toolkit."""
        found = REDUCERS.get(name)
        if found is not None:
            return found
        custom = self.custom_reducers.get(name)
        if custom is None:
            raise ReducerError(f"reducer {name!r} is not registered by the loaded toolkits")
        return custom.fn

    def start_state(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The state a run starts from: ``given``, with each reduced key it does not set
        holding its reducer's empty value (LangGraph's channels start from their type)."""
        state = dict(given)
        for key, name in self.reducers.items():
            if key in state:
                continue
            custom = self.custom_reducers.get(name)
            empty = EMPTY.get(name) if custom is None else custom.empty
            if empty is not None:
                state[key] = empty()
        return state

    def targets(self, node: str, state: Mapping[str, Any]) -> Targets:
        """Where the run goes after ``node``, given the state its task left (``()``: nowhere
        but the joins that wait for it). A router's targets are not here: it is a function
        of a toolkit (:func:`engine.superstep.run_task`)."""
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
        plain = all(
            n.map is None and not n.defer and not n.goto for n in self.nodes.values()
        ) and all(b.router is None for b in self.branches.values())
        return single and plain and not self.joins

    def successors(self, node: str) -> tuple[str, ...]:
        """Every node (or END) the run may go to after ``node``, joins included."""
        targets: list[str] = list(self.edges.get(node, ()))
        branch = self.branches.get(node)
        if branch is not None:
            for case in branch.cases:
                targets.extend(case.targets)
            targets.extend(branch.default or ())
            targets.extend(branch.to)
        targets.extend(self.nodes[node].goto if node in self.nodes else ())
        on_error = self.nodes[node].failure.on_error if node in self.nodes else None
        targets.extend((on_error,) if on_error is not None else ())
        question = self.nodes[node].interrupt if node in self.nodes else None
        on_timeout = question.on_timeout if question is not None else None
        targets.extend((on_timeout,) if on_timeout is not None else ())
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
        if self.interrupt_before:
            doc["interrupt_before"] = sorted(self.interrupt_before)
        if self.interrupt_after:
            doc["interrupt_after"] = sorted(self.interrupt_after)
        return doc


def _constant(targets: Targets) -> Router:
    return lambda _state: targets


def _targets_doc(targets: Targets) -> str | list[str]:
    """One target as a string (the form every dialect has always used), several as a list."""
    return targets[0] if len(targets) == 1 else list(targets)


def _branching(node_id: str, branch: Branch) -> Router:
    return lambda state: branch.route(node_id, state)


def _node_doc(node: Node) -> dict[str, Any]:
    if node.wait is not None:  # a wait node runs no tool
        return {"wait": node.wait.to_dict(), **({"defer": True} if node.defer else {})}
    if node.interrupt is not None:  # nor does an interrupt node
        return {"interrupt": node.interrupt.to_dict(), **({"defer": True} if node.defer else {})}
    if node.subgraph is not None:
        doc: dict[str, Any] = node.subgraph.to_dict()
    else:
        doc = {"tool": node.tool}
    if node.settings:
        doc["settings"] = dict(node.settings)
    if node.map is not None:
        doc["map"] = node.map.to_dict()
    if node.defer:
        doc["defer"] = True
    if node.goto:
        doc["goto"] = list(node.goto)
    doc.update(failure_doc(node.failure))
    return doc


def _branch_doc(branch: Branch) -> dict[str, Any]:
    if branch.router is not None:
        return {"router": branch.router, "to": list(branch.to)}
    doc: dict[str, Any] = {
        "cases": [{"when": c.condition.source, "to": _targets_doc(c.targets)} for c in branch.cases]
    }
    if branch.default is not None:
        doc["default"] = _targets_doc(branch.default)
    return doc
