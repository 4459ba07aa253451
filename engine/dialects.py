"""Graph definitions as clients send them, turned into one draft shape with locations.

Four shapes are accepted; each becomes a :class:`Draft` whose parts remember where in the
client's document they came from, so validation can say ``nodes.evaluate.next.condition``
rather than pointing into a form the client never wrote.

- canonical: ``entry``, ``nodes`` {id: {tool, settings?, map?, defer?, goto?} or {graph, input?,
  output?, map?, defer?}}, ``edges``
  {from: to}, ``branches`` {from: {cases: [{when, to}], default?} or {router, to}},
  ``joins`` {node: [waits for...]}, ``state`` {key: {reducer}}, ``max_steps``; every ``to``
  may be a list (a fan-out);
- dialect 1: ``nodes`` {id: {tool, next}} where ``next`` is a node, ``"end"`` or
  ``{condition, if_true, if_false}``; entry in ``start_node``;
- dialect 2: ``nodes`` {id: tool}, ``edges`` {from: to}; the first node is the entry;
- dialect 3: ``nodes`` [{node_id|id, tool|function_name, settings?, map?}], ``edges``
  [{from|source, to|target, condition?}]; entry in ``entry_node`` or ``entry_point``.
  Several plain edges out of one node fan out; an edge whose ``from`` is a list is a join
  (LangGraph's ``add_edge([a, b], c)``).

In dialects 2 and 3, as in the engines that defined them, a node without an outgoing edge
ends the run: the draft gets an explicit edge to END there, so the canonical form says so.
Any other key is refused with its location (:mod:`engine.keys` holds the one table of them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.errors import Problem
from engine.graph import END, END_ALIASES
from engine.keys import unknown_keys

_CASE_SHAPE = '{"when": "<condition>", "to": "<node or END>"}'
_EDGE_SHAPE = '{"from": "<node>", "to": "<node or END>", "condition": "<optional>"}'


@dataclass
class DraftNode:
    id: Any
    tool: Any
    loc: str
    tool_loc: str
    settings: Any = None
    map: Any = None
    defer: Any = None
    goto: Any = None
    subgraph: Any = None
    """A subgraph node's ``{"graph", "input"?, "output"?}`` as written (``None``: a tool)."""
    failure: dict[str, Any] = field(default_factory=dict)
    """Its ``retry``, ``timeout_s`` and ``on_error`` as written (the keys it has)."""
    wait: Any = None
    """A wait node's ``wait`` as written (engine/timers.py)."""
    interrupt: Any = None
    """An interrupt node's ``interrupt`` as written (engine/pauses.py)."""


@dataclass
class DraftCase:
    when: Any
    when_loc: str
    target: Any
    target_loc: str


@dataclass
class DraftRoute:
    """How the run leaves one node: a plain edge (``target``) or ordered cases."""

    source: Any
    loc: str
    target: Any = None
    target_loc: str = ""
    cases: list[DraftCase] = field(default_factory=list)
    default: Any = None
    default_loc: str = ""
    fan_locs: list[str] = field(default_factory=list)
    """Where each target of a fan-out merged from separate edges was written (dialect 3)."""
    branch: bool = False
    """A branch even without cases: its malformed cases are reported already."""
    source_loc: str = ""
    """Where the source node is named, when not at ``loc`` (``edges[0].from``)."""
    router: Any = None
    """A registered router's name (a branch decided by a function), as written."""
    router_to: Any = None
    """Where that router may go (``to``), as written."""

    @property
    def is_branch(self) -> bool:
        return self.branch or bool(self.cases) or self.router is not None


@dataclass
class DraftJoin:
    """A node that waits for several others: ``sources`` as written, and where."""

    node: Any
    sources: Any
    loc: str


@dataclass
class Draft:
    dialect: str
    name: Any = "graph"
    entry: Any = None
    entry_loc: str = "entry"
    nodes: list[DraftNode] = field(default_factory=list)
    routes: list[DraftRoute] = field(default_factory=list)
    max_steps: Any = None
    state: Any = None
    """The ``state`` object as written (key -> {"reducer": name})."""
    joins: list[DraftJoin] = field(default_factory=list)
    defaults: Any = None
    """The ``defaults`` object as written (``retry``, ``timeout_s`` for every node)."""
    interrupt_before: Any = None
    interrupt_after: Any = None
    """The static breakpoints as written (engine/pauses.py)."""
    problems: list[Problem] = field(default_factory=list)


def read_draft(doc: Any) -> Draft:
    """Recognise the dialect of ``doc`` and read it into a :class:`Draft`."""
    if not isinstance(doc, dict):
        return Draft("unknown", problems=[Problem("$", "a graph must be a JSON object")])
    nodes = doc.get("nodes")
    if isinstance(nodes, list):
        draft = _read_dialect3(doc, nodes)
    elif not isinstance(nodes, dict):
        draft = Draft("unknown", problems=[Problem("nodes", "missing: a graph needs nodes")])
    elif nodes and all(isinstance(v, str) for v in nodes.values()):
        draft = _read_dialect2(doc, nodes)
    elif _looks_like_dialect1(doc, nodes):
        draft = _read_dialect1(doc, nodes)
    else:
        draft = _read_canonical(doc, nodes)
    draft.problems.extend(unknown_keys(doc, "canonical" if draft.dialect == "unknown" else
                                       draft.dialect))  # fmt: skip
    draft.name = doc.get("name", "graph")
    draft.max_steps = doc.get("max_steps")
    draft.state = doc.get("state")
    draft.defaults = doc.get("defaults")
    draft.interrupt_before = doc.get("interrupt_before")
    draft.interrupt_after = doc.get("interrupt_after")
    joins = doc.get("joins")
    if isinstance(joins, dict):
        draft.joins.extend(DraftJoin(k, v, f"joins.{k}") for k, v in joins.items())
    elif joins is not None:
        draft.problems.append(Problem("joins", "must be an object mapping node -> [nodes]"))
    return draft


def _looks_like_dialect1(doc: dict[str, Any], nodes: dict[str, Any]) -> bool:
    """Whether ``doc`` reads better as dialect 1 (``start_node``, nodes' ``next``) than canonical.

    Both dialects key nodes by id with object values, so one stray key (a node's ``next`` in a
    canonical graph, ``start_node`` beside ``entry``) must not switch the whole document to the
    other dialect and report every key as wrong: the dialect that leaves fewer unknown keys wins.
    """
    marked = "start_node" in doc or any(isinstance(v, dict) and "next" in v for v in nodes.values())
    if not marked:
        return False
    return len(unknown_keys(doc, "dialect1")) <= len(unknown_keys(doc, "canonical"))


_FAILURE_KEYS = ("retry", "timeout_s", "on_error")


def _failure(spec: dict[str, Any]) -> dict[str, Any]:
    """A node's failure handling keys, as written (engine/retry_policy.py)."""
    return {key: spec[key] for key in _FAILURE_KEYS if key in spec}


def _node_from_spec(node_id: str, spec: Any, loc: str) -> DraftNode:
    if not isinstance(spec, dict):
        return DraftNode(node_id, None, loc, f"{loc}.tool")
    subgraph = None
    if "graph" in spec:
        subgraph = {k: spec[k] for k in ("graph", "input", "output") if k in spec}
    return DraftNode(
        node_id, spec.get("tool"), loc, f"{loc}.tool", spec.get("settings"), spec.get("map"),
        spec.get("defer"), spec.get("goto"), subgraph, _failure(spec), spec.get("wait"),
        spec.get("interrupt"),
    )  # fmt: skip


def _read_canonical(doc: dict[str, Any], nodes: dict[str, Any]) -> Draft:
    draft = Draft("canonical", entry=doc.get("entry"))
    draft.nodes = [_node_from_spec(k, v, f"nodes.{k}") for k, v in nodes.items()]
    edges = doc.get("edges", {})
    if isinstance(edges, dict):
        for source, target in edges.items():
            loc = f"edges.{source}"
            draft.routes.append(DraftRoute(source, loc, target=target, target_loc=loc))
    else:
        draft.problems.append(Problem("edges", "must be an object mapping node -> next node"))
    branches = doc.get("branches", {})
    if isinstance(branches, dict):
        draft.routes.extend(_canonical_branch(k, v, draft.problems) for k, v in branches.items())
    else:
        draft.problems.append(Problem("branches", "must be an object mapping node -> branch"))
    return draft


def _canonical_branch(source: str, spec: Any, problems: list[Problem]) -> DraftRoute:
    loc = f"branches.{source}"
    route = DraftRoute(source, loc, default_loc=f"{loc}.default", branch=True)
    cases = spec.get("cases") if isinstance(spec, dict) else None
    if isinstance(spec, dict) and "router" in spec:  # decided by a registered function
        route.router, route.router_to = spec["router"], spec.get("to")
        return route
    if not isinstance(spec, dict):
        shape = f'{{"cases": [{_CASE_SHAPE}], "default": "<node or END>"}}'
        problems.append(Problem(loc, f"a branch must be an object: {shape}"))
    elif not isinstance(cases, list) or not cases:
        what = "is empty" if isinstance(cases, list) else "must be a list"
        problems.append(
            Problem(
                f"{loc}.cases",
                f"{what}: a branch needs at least one case {_CASE_SHAPE}; "
                f'for a route without a condition, write "edges": {{"{source}": "<node>"}}',
            )
        )
    else:
        route.default = spec.get("default")
        route.cases = _canonical_cases(cases, f"{loc}.cases", problems)
    return route


def _canonical_cases(cases: list[Any], loc: str, problems: list[Problem]) -> list[DraftCase]:
    read: list[DraftCase] = []
    for i, case in enumerate(cases):
        case_loc = f"{loc}[{i}]"
        if not isinstance(case, dict):
            problems.append(Problem(case_loc, f"a case must be an object: {_CASE_SHAPE}"))
            continue
        when, to = case.get("when"), case.get("to")
        read.append(DraftCase(when, f"{case_loc}.when", to, f"{case_loc}.to"))
    return read


def _read_dialect1(doc: dict[str, Any], nodes: dict[str, Any]) -> Draft:
    draft = Draft("dialect1", entry=doc.get("start_node"), entry_loc="start_node")
    for node_id, spec in nodes.items():
        loc = f"nodes.{node_id}"
        draft.nodes.append(_node_from_spec(node_id, spec, loc))
        nxt = spec.get("next") if isinstance(spec, dict) else None
        if isinstance(nxt, dict):
            draft.routes.append(_dialect1_condition(node_id, nxt, f"{loc}.next"))
        elif nxt is not None:
            draft.routes.append(DraftRoute(node_id, loc, target=nxt, target_loc=f"{loc}.next"))
    return draft


def _dialect1_condition(source: str, nxt: dict[str, Any], loc: str) -> DraftRoute:
    case = DraftCase(nxt.get("condition"), f"{loc}.condition", nxt.get("if_true"), f"{loc}.if_true")
    return DraftRoute(
        source, loc, cases=[case], default=nxt.get("if_false"), default_loc=f"{loc}.if_false"
    )


def _read_dialect2(doc: dict[str, Any], nodes: dict[str, str]) -> Draft:
    first = next(iter(nodes))
    explicit = doc.get("entry", doc.get("start_node"))
    draft = Draft("dialect2", entry=explicit if explicit is not None else first)
    draft.nodes = [DraftNode(k, v, f"nodes.{k}", f"nodes.{k}") for k, v in nodes.items()]
    edges = doc.get("edges", {})
    if isinstance(edges, dict):
        for source, target in edges.items():
            loc = f"edges.{source}"
            draft.routes.append(DraftRoute(source, loc, target=target, target_loc=loc))
    else:
        draft.problems.append(Problem("edges", "must be an object mapping node -> next node"))
    _end_where_no_edge_leaves(draft)
    return draft


def _end_where_no_edge_leaves(draft: Draft) -> None:
    """Dialects 2 and 3 end the run at a node no edge leaves: say so with an edge to END."""
    routed = {route.source for route in draft.routes if isinstance(route.source, str)}
    for join in draft.joins:  # a node a join waits for leaves by the join
        routed.update(s for s in join.sources if isinstance(s, str))
    for node in draft.nodes:
        if isinstance(node.id, str) and node.id not in routed and node.id not in END_ALIASES:
            routed.add(node.id)  # once per id: a duplicate id is reported on its own
            draft.routes.append(DraftRoute(node.id, node.loc, target=END, target_loc=node.loc))


def _first_present(spec: dict[str, Any], *keys: str) -> Any:
    return next((spec[k] for k in keys if k in spec), None)


def _key_present(spec: dict[str, Any], *keys: str) -> str:
    """The spelling the client used (for locations), else the first one."""
    return next((k for k in keys if k in spec), keys[0])


def _read_dialect3(doc: dict[str, Any], nodes: list[Any]) -> Draft:
    entry_key = _key_present(doc, "entry_node", "entry_point", "entry", "start_node")
    draft = Draft("dialect3", entry=doc.get(entry_key), entry_loc=entry_key)
    for i, spec in enumerate(nodes):
        loc = f"nodes[{i}]"
        spec = spec if isinstance(spec, dict) else {}
        draft.nodes.append(
            DraftNode(
                _first_present(spec, "node_id", "id"),
                _first_present(spec, "tool", "function_name"),
                loc,
                f"{loc}.{_key_present(spec, 'tool', 'function_name')}",
                spec.get("settings"),
                spec.get("map"),
                failure=_failure(spec),
            )
        )
    edges = doc.get("edges", [])
    if isinstance(edges, list):
        draft.routes, draft.joins, problems = _dialect3_routes(edges)
        draft.problems.extend(problems)
    else:
        draft.problems.append(Problem("edges", f"must be a list of edges {_EDGE_SHAPE}"))
    _end_where_no_edge_leaves(draft)
    return draft


def _dialect3_routes(
    edges: list[Any],
) -> tuple[list[DraftRoute], list[DraftJoin], list[Problem]]:
    """Edges out of one node merge into one route: conditions in order, then the plain edges
    (several plain edges fan out). An edge from a list of nodes is a join."""
    routes: dict[Any, DraftRoute] = {}
    joins: list[DraftJoin] = []
    problems: list[Problem] = []
    for i, spec in enumerate(edges):
        loc = f"edges[{i}]"
        if not isinstance(spec, dict):
            problems.append(Problem(loc, f"an edge must be an object: {_EDGE_SHAPE}"))
            continue
        source = _first_present(spec, "from", "source")
        source_loc = f"{loc}.{_key_present(spec, 'from', 'source')}"
        target = _first_present(spec, "to", "target")
        target_loc = f"{loc}.{_key_present(spec, 'to', 'target')}"
        if isinstance(source, list):
            _dialect3_join(spec, source, target, loc, joins, problems)
            continue
        if not isinstance(source, str) or not source:
            problems.append(Problem(source_loc, _bad_source(source)))
            continue
        route = routes.setdefault(source, DraftRoute(source, loc, source_loc=source_loc))
        if spec.get("condition") is not None:
            route.cases.append(DraftCase(spec["condition"], f"{loc}.condition", target, target_loc))
        elif route.default is None:
            route.default, route.default_loc = target, target_loc
            route.fan_locs = [target_loc]
        else:  # another plain edge out of the same node: a fan-out
            before = route.default if isinstance(route.default, list) else [route.default]
            route.default = [*before, target]
            route.fan_locs.append(target_loc)
    for route in routes.values():
        if not route.cases:  # plain edge
            route.target, route.target_loc = route.default, route.default_loc
            route.default = None
    return list(routes.values()), joins, problems


def _dialect3_join(
    spec: dict[str, Any], sources: list[Any], target: Any, loc: str,
    joins: list[DraftJoin], problems: list[Problem],
) -> None:  # fmt: skip
    """An edge from a list of nodes: the target waits for all of them (a join)."""
    from_loc = f"{loc}.{_key_present(spec, 'from', 'source')}"
    if spec.get("condition") is not None:
        problems.append(Problem(f"{loc}.condition", "a join (an edge from a list) is plain"))
    elif not isinstance(target, str):
        problems.append(Problem(loc, "a join (an edge from a list) goes to one node"))
    else:
        joins.append(DraftJoin(target, sources, from_loc))


def _bad_source(source: Any) -> str:
    if source is None or source == "":
        return 'missing: name the node this edge leaves ("from": "<node>")'
    return f'must be a node id (a string), not {type(source).__name__}: "from": "<node>"'
