"""Graphs written in Python, in the style of LangGraph's ``StateGraph``.

The builder only writes the canonical JSON form (:meth:`StateGraph.to_dict`); checking it is
:func:`engine.validation.build_graph`'s, as for a document sent to the API, so a graph built
here is refused or accepted exactly as its JSON would be. Names follow LangGraph's where the
meaning is the same::

    from engine.builder import END, START, StateGraph
    from my_project.tools import draft, review

    graph = StateGraph("review", state={"notes": "append"})
    graph.add_node("draft", draft)                   # a registered tool function, or its name
    graph.add_node("review", review, settings={"strict": True})
    graph.add_edge(START, "draft")
    graph.add_edge("draft", "review")
    graph.add_conditional_edges("review", {"score >= 7": END}, default="draft")

``add_edge`` from several nodes is a join (LangGraph's ``add_edge([a, b], c)``); several
edges out of one node fan out; a node's ``map`` runs it once per item of a state list
(LangGraph's ``Send``). Conditions are hopgraph's expressions over the state (see
:mod:`engine.conditions`), tried in order.
"""

from __future__ import annotations

import operator
import typing
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from engine.graph import END, Graph, MapSpec
from engine.reducers import REDUCERS
from engine.tools import Toolkit
from engine.validation import build_graph

START = "__start__"
"""LangGraph's ``START``: ``add_edge(START, node)`` makes ``node`` the entry."""

__all__ = ["END", "START", "StateGraph"]

Target = str | Sequence[str]
Action = str | Callable[..., Any]


class StateGraph:
    """A graph under construction; :meth:`to_dict` gives its canonical JSON form and
    :meth:`compile` the validated :class:`~engine.graph.Graph`.

    ``state``: a reducer per state key, by name (``{"notes": "append"}``), or a ``TypedDict``
    whose keys are ``Annotated`` with a reducer: a name, one of :data:`engine.reducers.REDUCERS`
    or ``operator.add``. Keys without one are replaced.
    """

    def __init__(
        self, name: str = "graph", state: Mapping[str, str] | type | None = None, *,
        max_steps: int | None = None,
    ) -> None:  # fmt: skip
        self.name = name
        self.entry: str | None = None
        self.nodes: dict[str, dict[str, Any]] = {}
        self.edges: dict[str, list[str]] = {}
        self.branches: dict[str, dict[str, Any]] = {}
        self.joins: dict[str, list[str]] = {}
        self.state: dict[str, str] = _reducers_of(state)
        self.max_steps = max_steps
        self.interrupt_before: list[str] = []
        self.interrupt_after: list[str] = []

    # -- LangGraph's vocabulary ---------------------------------------------------------------
    def add_node(
        self,
        node: Action,
        action: Action | None = None,
        *,
        settings: Mapping[str, Any] | None = None,
        map: MapSpec | Mapping[str, Any] | None = None,
        **options: Any,
    ) -> StateGraph:
        """Add a node that calls a tool: ``add_node("name", tool)``, or ``add_node(tool)``
        named after its tool. ``tool`` is a function registered in a toolkit, or a tool's name.
        ``map``: ``{"over": "docs", "as": "doc", "max_concurrency": 20}``. Any other keyword
        becomes a key of the node's JSON, checked as the JSON is.

        A node that runs another graph (a subgraph, LangGraph's compiled graph as a node):
        ``add_node("name", other)`` with ``other`` a :class:`StateGraph` or a compiled
        :class:`~engine.graph.Graph` (named by its name), or ``add_node("name",
        graph="name or id")``; ``input={"parent key": "child key"}`` and ``output={"child
        key": "parent key"}`` map keys (:mod:`engine.subgraphs`)."""
        if action is None and "graph" not in options:
            action, node = node, _tool_name(node)
        if not isinstance(node, str):
            raise TypeError(f"a node's name is a string, not {type(node).__name__}")
        if node in self.nodes:
            raise ValueError(f"node {node!r} is already present")
        spec: dict[str, Any] = {}
        if isinstance(action, StateGraph | Graph):
            spec["graph"] = action.name
        elif action is not None:
            spec["tool"] = _tool_name(action)
        if settings:
            spec["settings"] = dict(settings)
        if map is not None:
            spec["map"] = map.to_dict() if isinstance(map, MapSpec) else dict(map)
        self.nodes[node] = {**spec, **options}
        return self

    def add_edge(self, start: str | Sequence[str], end: str) -> StateGraph:
        """``start`` -> ``end``. From :data:`START`: the entry. Several edges out of a node
        fan out. From a list of nodes: ``end`` waits for all of them (a join)."""
        if isinstance(start, str):
            if start == START:
                self.set_entry_point(end)
            else:
                self.edges.setdefault(start, []).append(end)
        else:
            self.joins[end] = list(start)
        return self

    def add_conditional_edges(
        self,
        source: str,
        path: Mapping[str, Target] | Sequence[tuple[str, Target]],
        *,
        default: Target | None = None,
    ) -> StateGraph:
        """Leave ``source`` by the first condition that holds (``{"score >= 7": END}``, in
        order), else by ``default``. A target may be a list of nodes (they all run)."""
        cases = path.items() if isinstance(path, Mapping) else path
        branch: dict[str, Any] = {"cases": [{"when": w, "to": _target(t)} for w, t in cases]}
        if default is not None:
            branch["default"] = _target(default)
        self.branches[source] = branch
        return self

    def set_entry_point(self, node: str) -> StateGraph:
        self.entry = node
        return self

    def set_finish_point(self, node: str) -> StateGraph:
        """``node`` ends the run: an edge to END."""
        return self.add_edge(node, END)

    def compile(
        self, tools: Toolkit | Collection[str] | None = None,
        writes: Mapping[str, Collection[str]] | None = None, *,
        interrupt_before: Sequence[str] = (), interrupt_after: Sequence[str] = (),
    ) -> Graph:  # fmt: skip
        """The validated graph, as :func:`~engine.validation.build_graph` makes it from
        :meth:`to_dict`. ``tools``: a toolkit (its tool names and the keys they declare they
        write are checked too, as the API does), or the registered names.
        ``interrupt_before`` / ``interrupt_after``: static breakpoints, as LangGraph's
        ``compile`` takes them (kept in the graph: :meth:`to_dict` shows them)."""
        self.interrupt_before += [n for n in interrupt_before if n not in self.interrupt_before]
        self.interrupt_after += [n for n in interrupt_after if n not in self.interrupt_after]
        if isinstance(tools, Toolkit):
            from engine.service import declared_writes

            writes = declared_writes(tools) if writes is None else writes
            tools = tools.names()
        return build_graph(self.to_dict(), tools, writes)

    # -- the canonical JSON form, both ways ---------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The canonical JSON form: what ``hopgraph graphs create`` and ``POST /graphs`` send."""
        doc: dict[str, Any] = {"name": self.name}
        if self.entry is not None:
            doc["entry"] = self.entry
        doc["nodes"] = {k: dict(v) for k, v in self.nodes.items()}
        doc["edges"] = {k: _target(v) for k, v in self.edges.items()}
        doc["branches"] = {k: dict(v) for k, v in self.branches.items()}
        if self.state:
            doc["state"] = {key: {"reducer": name} for key, name in self.state.items()}
        if self.joins:
            doc["joins"] = {k: list(v) for k, v in self.joins.items()}
        if self.max_steps is not None:
            doc["max_steps"] = self.max_steps
        if self.interrupt_before:
            doc["interrupt_before"] = list(self.interrupt_before)
        if self.interrupt_after:
            doc["interrupt_after"] = list(self.interrupt_after)
        return doc

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> StateGraph:
        """A builder holding the graph ``doc`` describes (any accepted dialect, validated)."""
        canonical = build_graph(dict(doc)).to_dict()
        builder = cls(canonical["name"], max_steps=canonical.get("max_steps"))
        builder.entry = canonical["entry"]
        builder.nodes = canonical["nodes"]
        builder.edges = {k: _listed(v) for k, v in canonical["edges"].items()}
        builder.branches = canonical["branches"]
        builder.joins = canonical.get("joins", {})
        builder.state = {k: v["reducer"] for k, v in canonical.get("state", {}).items()}
        builder.interrupt_before = list(canonical.get("interrupt_before", ()))
        builder.interrupt_after = list(canonical.get("interrupt_after", ()))
        return builder


def _tool_name(action: Any) -> str:
    if isinstance(action, str):
        return action
    name = getattr(action, "__hopgraph_tool__", None) or getattr(action, "__name__", None)
    if not isinstance(name, str):
        raise TypeError(f"a node calls a tool (a function or a tool's name), not {action!r}")
    return name


def _target(target: Target) -> str | list[str]:
    if isinstance(target, str):
        return target
    targets = list(target)
    return targets[0] if len(targets) == 1 else targets


def _listed(target: str | list[str]) -> list[str]:
    return [target] if isinstance(target, str) else list(target)


_BY_FUNCTION: dict[Any, str] = {fn: name for name, fn in reversed(list(REDUCERS.items()))}
_BY_FUNCTION[operator.add] = "add"


def _reducers_of(state: Mapping[str, str] | type | None) -> dict[str, str]:
    if state is None:
        return {}
    if isinstance(state, Mapping):
        return dict(state)
    reducers: dict[str, str] = {}
    for key, hint in typing.get_type_hints(state, include_extras=True).items():
        for meta in getattr(hint, "__metadata__", ()):
            name = meta if isinstance(meta, str) else _BY_FUNCTION.get(meta)
            if name is None:
                raise ValueError(
                    f"state key {key!r}: {meta!r} is not a reducer hopgraph knows; use one of "
                    + ", ".join(REDUCERS)
                )
            reducers[key] = name
    return reducers


def graph_document(value: Any) -> dict[str, Any]:
    """The JSON document of a graph given as a builder, a :class:`Graph` or a dict."""
    if isinstance(value, StateGraph | Graph):
        return value.to_dict()
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"not a graph: {type(value).__name__} (a StateGraph, Graph or dict)")
