"""Checking a graph definition once, reporting every problem with its location.

``build_graph`` is the only way to get a :class:`~engine.graph.Graph`: it reads any accepted
dialect, checks names, tools, targets, conditions, reachability and exits, and raises
:class:`~engine.errors.GraphValidationError` listing every problem at once.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace as dataclass_replace
from types import MappingProxyType
from typing import Any

from engine.agents import expand_model_nodes
from engine.conditions import compile_condition
from engine.dialects import Draft, DraftNode, DraftRoute, read_draft
from engine.errors import ConditionSyntaxError, GraphValidationError, Problem
from engine.graph import (
    END,
    END_ALIASES,
    SUBGRAPH_TOOL,
    Branch,
    Case,
    Graph,
    MapSpec,
    Node,
    SubgraphSpec,
    Targets,
    canonical_target,
)
from engine.interrupt_spec import read_breakpoints, read_question
from engine.parallel_checks import check_parallel_writes
from engine.reducers import REDUCERS
from engine.retry_policy import FailurePolicy, RetryPolicy, read_retry, read_timeout
from engine.tools import Toolkit
from engine.wait_spec import read_wait

MAX_STEPS_CEILING = 10_000
MAX_CONCURRENCY_CEILING = 1_000


def build_graph(
    doc: Any,
    tools: Collection[str] | None = None,
    writes: Mapping[str, Collection[str]] | None = None,
    *,
    toolkit: Toolkit | None = None,
    timeout_ceiling_s: float | None = None,
) -> Graph:
    """Validate ``doc`` (any accepted dialect) and return the immutable graph.

    ``tools``: the registered tool names; ``None`` skips the unknown-tool check.
    ``writes``: the state keys each tool declares it writes, where it does; two tasks that
    may run in one superstep and write the same key without a reducer are refused here.
    ``toolkit``: the registry the graph runs with: its reducers are resolved into the graph,
    and with ``tools`` (a graph being created) its router and reducer names are checked too.
    Without ``tools`` (a stored graph read back), a router or reducer name is taken on trust:
    one that no loaded toolkit registers fails the task or merge that needs it.
    ``timeout_ceiling_s``: the longest ``timeout_s`` a node may declare (the worker's
    function timeout minus the commit margin); ``None``: no ceiling.
    """
    doc, model_problems = expand_model_nodes(doc, toolkit, tools)  # llm and agent nodes
    draft = read_draft(doc)
    draft.problems.extend(model_problems)
    if not isinstance(doc, dict):  # "not an object" says it all: no entry, nodes... to check
        raise GraphValidationError(draft.problems)
    checker = _Checker(draft, tools, toolkit, timeout_ceiling_s)
    graph = checker.build()
    if graph is not None and writes is not None:
        checker.problems.extend(check_parallel_writes(graph, writes, checker.node_locs))
    if checker.problems or graph is None:
        raise GraphValidationError(checker.problems)
    return graph


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Checker:
    def __init__(
        self, draft: Draft, tools: Collection[str] | None, toolkit: Toolkit | None = None,
        timeout_ceiling_s: float | None = None,
    ) -> None:  # fmt: skip
        self.draft = draft
        self.tools = tools
        self.toolkit = toolkit
        self.timeout_ceiling_s = timeout_ceiling_s
        self.problems: list[Problem] = list(draft.problems)
        self.node_locs: dict[str, str] = {}

    def add(self, loc: str, message: str) -> None:
        self.problems.append(Problem(loc, message))

    def build(self) -> Graph | None:
        nodes = self._failures(self._gotos(self._nodes()))
        self._timeouts(nodes)
        before, after = self._breakpoints(nodes)
        entry = self._entry()
        edges, branches = self._routes()
        joins = self._joins()
        reducers = self._reducers()
        max_steps = self._max_steps()
        name = self._name()
        self._exits()
        self._reachability(entry)
        if self.problems or entry is None:
            return None
        return Graph(
            name=name,
            entry=entry,
            nodes=MappingProxyType(nodes),
            edges=MappingProxyType(edges),
            branches=MappingProxyType(branches),
            max_steps=max_steps,
            reducers=MappingProxyType(reducers),
            joins=MappingProxyType(joins),
            custom_reducers=self.toolkit.reducers() if self.toolkit is not None else {},
            interrupt_before=before,
            interrupt_after=after,
        )

    # -- nodes and entry -------------------------------------------------------------------
    def _nodes(self) -> dict[str, Node]:
        if not self.draft.nodes and not self.problems:
            self.add("nodes", "the graph has no nodes")
        nodes: dict[str, Node] = {}
        for dn in self.draft.nodes:
            if not isinstance(dn.id, str) or not dn.id:
                self.add(dn.loc, "a node needs a non-empty string id")
                continue
            if dn.id in END_ALIASES:
                self.add(dn.loc, f"{dn.id!r} is reserved: it ends the run")
                continue
            if dn.id in nodes:
                self.add(dn.loc, f"duplicate node id {dn.id!r}")
                continue
            self.node_locs[dn.id] = dn.loc
            if dn.subgraph is not None:
                self._subgraph_node(dn, nodes)
                continue
            if dn.wait is not None:
                self._wait_node(dn, nodes)
                continue
            if dn.interrupt is not None:
                self._interrupt_node(dn, nodes)
                continue
            tool_ok = self._tool_ok(dn.tool, dn.tool_loc)
            settings_ok = self._settings_ok(dn.settings, dn.loc)
            spec = self._map(dn.map, f"{dn.loc}.map")
            defer_ok = dn.defer is None or isinstance(dn.defer, bool)
            if not defer_ok:
                self.add(f"{dn.loc}.defer", "must be true or false")
            if tool_ok and settings_ok and defer_ok and (dn.map is None or spec is not None):
                settings = MappingProxyType(dict(dn.settings or {}))
                nodes[dn.id] = Node(dn.id, dn.tool, settings, spec, defer=bool(dn.defer))
        return nodes

    def _subgraph_node(self, dn: DraftNode, nodes: dict[str, Node]) -> None:
        """A node that runs another graph: ``graph`` names it, ``input`` and ``output`` map
        keys (parent -> child, child -> parent); it may map and defer, not name a tool."""
        doc = dn.subgraph
        ref = doc.get("graph")
        ok = True
        if not isinstance(ref, str) or not ref:
            self.add(f"{dn.loc}.graph", "must name a graph (its name or id)")
            ok = False
        for name, value in (("tool", dn.tool), ("settings", dn.settings), ("goto", dn.goto)):
            if value is not None:
                self.add(f"{dn.loc}.{name}", f"a node that runs a graph has no {name}: its "
                         "child run's own nodes do the work")  # fmt: skip
                ok = False
        mappings = {k: self._key_mapping(doc.get(k), f"{dn.loc}.{k}") for k in ("input", "output")}
        spec = self._map(dn.map, f"{dn.loc}.map")
        defer_ok = dn.defer is None or isinstance(dn.defer, bool)
        if not defer_ok:
            self.add(f"{dn.loc}.defer", "must be true or false")
        if not ok or not defer_ok or (dn.map is not None and spec is None):
            return
        if any(doc.get(k) is not None and mappings[k] is None for k in mappings):
            return
        sub = SubgraphSpec(str(ref), mappings["input"], mappings["output"])
        nodes[dn.id] = Node(dn.id, SUBGRAPH_TOOL + str(ref), map=spec, defer=bool(dn.defer),
                            subgraph=sub)  # fmt: skip

    def _key_mapping(self, value: Any, loc: str) -> Mapping[str, str] | None:
        if value is None:
            return None
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and k and isinstance(v, str) and v for k, v in value.items()
        ):
            self.add(loc, 'must be an object of state keys: {"<from key>": "<to key>"}')
            return None
        return MappingProxyType(dict(value))

    def _gotos(self, nodes: dict[str, Node]) -> dict[str, Node]:
        """Each node's ``goto``: where its tool's Command may send the run (once every node
        id is known)."""
        for dn in self.draft.nodes:
            if dn.goto is None or not isinstance(dn.id, str) or dn.id not in nodes:
                continue
            targets = self._destinations(dn.goto, f"{dn.loc}.goto")
            if targets is not None:
                nodes[dn.id] = dataclass_replace(nodes[dn.id], goto=targets)
        return nodes

    def _wait_node(self, dn: DraftNode, nodes: dict[str, Node]) -> None:
        """A node that waits for a time (engine/timers.py): no tool, nothing to retry."""
        wrong = [k for k in ("tool", "map", "retry", "timeout_s", "on_error")
                 if getattr(dn, k, None) is not None or dn.failure.get(k) is not None]  # fmt: skip
        for key in wrong:
            self.add(f"{dn.loc}.{key}", "a wait node runs no tool: it has no " + key)
        spec = read_wait(dn.wait, f"{dn.loc}.wait", self.add)
        if spec is not None and not wrong:
            nodes[dn.id] = Node(dn.id, "wait", wait=spec, defer=dn.defer is True)

    def _interrupt_node(self, dn: DraftNode, nodes: dict[str, Node]) -> None:
        """A node that waits for a person (engine/pauses.py): no tool, nothing to retry."""
        wrong = [k for k in ("tool", "map", "retry", "timeout_s", "on_error")
                 if getattr(dn, k, None) is not None or dn.failure.get(k) is not None]  # fmt: skip
        for key in wrong:
            self.add(f"{dn.loc}.{key}", "an interrupt node runs no tool: it has no " + key)
        spec = read_question(dn.interrupt, f"{dn.loc}.interrupt", self.add)
        if spec is not None and not wrong:
            nodes[dn.id] = Node(dn.id, "interrupt", interrupt=spec, defer=dn.defer is True)

    def _timeouts(self, nodes: dict[str, Node]) -> None:
        """Each interrupt node's ``on_timeout`` names another node (once every id is known)."""
        for node in nodes.values():
            target = node.interrupt.on_timeout if node.interrupt is not None else None
            if target is None:
                continue
            loc = f"{self.node_locs[node.id]}.interrupt.on_timeout"
            if target not in nodes or target == node.id:
                self.add(loc, f"must name another node of this graph, not {target!r}"
                         f"{_suggest(target, nodes)}")  # fmt: skip

    def _breakpoints(self, nodes: dict[str, Node]) -> tuple[frozenset[str], frozenset[str]]:
        """The graph's ``interrupt_before`` and ``interrupt_after``: nodes of this graph."""
        found: list[frozenset[str]] = []
        for name in ("interrupt_before", "interrupt_after"):
            listed = read_breakpoints(getattr(self.draft, name), name, self.add) or frozenset()
            unknown = sorted(n for n in listed if n not in nodes)
            for node in unknown:
                self.add(name, f"{node!r} is not a node of this graph{_suggest(node, nodes)}")
            found.append(listed - set(unknown))
        return found[0], found[1]

    def _failures(self, nodes: dict[str, Node]) -> dict[str, Node]:
        """Each node's ``retry``, ``timeout_s`` and ``on_error``, the graph's ``defaults``
        filling in what a node does not say (engine/retry_policy.py)."""
        default_retry, default_timeout = self._defaults()
        for dn in self.draft.nodes:
            if not isinstance(dn.id, str) or dn.id not in nodes or dn.wait is not None:
                continue
            if dn.interrupt is not None:
                continue
            written = dn.failure
            retry: RetryPolicy | None = default_retry
            if written.get("retry") is not None:
                retry = read_retry(written["retry"], f"{dn.loc}.retry", self.add)
            # A subgraph node's timeout bounds its child run, which no worker waits for: the
            # worker's ceiling does not apply, nor does a tool's default
            # (engine/subgraph_timeouts.py).
            child = dn.subgraph is not None
            timeout = None if child else default_timeout
            if written.get("timeout_s") is not None:
                timeout = read_timeout(written["timeout_s"], f"{dn.loc}.timeout_s",
                                       None if child else self.timeout_ceiling_s,
                                       self.add)  # fmt: skip
            on_error = None
            if written.get("on_error") is not None:
                on_error = self._target(written["on_error"], f"{dn.loc}.on_error")
                if on_error == END or on_error == dn.id:
                    self.add(f"{dn.loc}.on_error", "must name another node of this graph")
                    on_error = None
            policy = FailurePolicy(retry, timeout, on_error)
            if policy != FailurePolicy():
                nodes[dn.id] = dataclass_replace(nodes[dn.id], failure=policy)
        return nodes

    def _defaults(self) -> tuple[RetryPolicy | None, float | None]:
        spec = self.draft.defaults
        if spec is None:
            return None, None
        if not isinstance(spec, Mapping):
            self.add("defaults", 'must be an object: {"retry": {...}, "timeout_s": 30}')
            return None, None
        retry = spec.get("retry")
        timeout = spec.get("timeout_s")
        return (
            read_retry(retry, "defaults.retry", self.add) if retry is not None else None,
            read_timeout(timeout, "defaults.timeout_s", self.timeout_ceiling_s, self.add)
            if timeout is not None else None,
        )  # fmt: skip

    def _map(self, spec: Any, loc: str) -> MapSpec | None:
        if spec is None:
            return None
        if not isinstance(spec, Mapping):
            self.add(loc, 'must be an object: {"over": "items", "as": "item"}')
            return None
        over, as_, cap = spec.get("over"), spec.get("as"), spec.get("max_concurrency")
        ok = True
        for name, value in (("over", over), ("as", as_)):
            if not isinstance(value, str) or not value:
                self.add(f"{loc}.{name}", "must name a state key")
                ok = False
        if ok and over == as_:
            self.add(f"{loc}.as", f"must differ from over ({over!r}): each task sees one item")
            ok = False
        if cap is not None and (
            isinstance(cap, bool) or not isinstance(cap, int)
            or not 0 < cap <= MAX_CONCURRENCY_CEILING
        ):  # fmt: skip
            self.add(f"{loc}.max_concurrency", f"must be an integer from 1 to "
                     f"{MAX_CONCURRENCY_CEILING}")  # fmt: skip
            ok = False
        return MapSpec(str(over), str(as_), cap) if ok else None

    def _tool_ok(self, tool: Any, loc: str) -> bool:
        if not isinstance(tool, str) or not tool:
            self.add(loc, "missing tool: every node names a registered tool")
            return False
        if self.tools is not None and tool not in self.tools:
            self.add(loc, f"unknown tool {tool!r}{_suggest(tool, self.tools)}")
            return False
        return True

    def _settings_ok(self, settings: Any, loc: str) -> bool:
        if settings is None or isinstance(settings, Mapping):
            return True
        self.add(f"{loc}.settings", "settings must be an object")
        return False

    def _entry(self) -> str | None:
        entry, loc = self.draft.entry, self.draft.entry_loc
        if not self.draft.nodes:  # "no nodes" is reported already; an entry could name nothing
            return None
        if entry is None:
            self.add(loc, "missing entry node")
            return None
        if not isinstance(entry, str) or entry not in self.node_locs:
            known = _suggest(str(entry), self.node_locs)
            self.add(loc, f"entry {entry!r} is not a node of this graph{known}")
            return None
        return entry

    def _name(self) -> str:
        if isinstance(self.draft.name, str):
            return self.draft.name
        kind = "null" if self.draft.name is None else type(self.draft.name).__name__
        self.add("name", f"must be a string, not {kind}")
        return ""

    def _max_steps(self) -> int | None:
        value = self.draft.max_steps
        if value is None:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not (0 < value <= MAX_STEPS_CEILING)
        ):
            self.add("max_steps", f"must be an integer from 1 to {MAX_STEPS_CEILING}")
            return None
        return value

    # -- routes ----------------------------------------------------------------------------
    def _routes(self) -> tuple[dict[str, Targets], dict[str, Branch]]:
        edges: dict[str, Targets] = {}
        branches: dict[str, Branch] = {}
        for route in self.draft.routes:
            source = route.source
            if not isinstance(source, str) or source not in self.node_locs:
                known = _suggest(str(source), self.node_locs)
                self.add(
                    route.source_loc or route.loc, f"route out of unknown node {source!r}{known}"
                )
                continue
            if source in edges or source in branches:
                self.add(route.loc, f"node {source!r} has more than one way out; use one branch")
                continue
            if route.is_branch:
                branch = self._branch(route)
                if branch is not None:
                    branches[source] = branch
            else:
                targets = self._targets(route.target, route.target_loc, route.fan_locs)
                if targets is not None:
                    edges[source] = targets
        return edges, branches

    def _targets(self, value: Any, loc: str, item_locs: list[str] | None = None) -> Targets | None:
        """One target, or a list of several (a fan-out: every one runs next). ``item_locs``:
        where each item was written, when the list was merged from separate edges."""
        if not isinstance(value, list):
            target = self._target(value, loc)
            return None if target is None else (target,)
        if not value:
            self.add(loc, "an empty list: name a node, END, or several nodes to fan out to")
            return None
        locs = item_locs if item_locs and len(item_locs) == len(value) else None
        locs = locs or [f"{loc}[{i}]" for i in range(len(value))]
        found = [self._target(t, locs[i]) for i, t in enumerate(value)]
        if any(t is None for t in found):
            return None
        targets = tuple(t for t in found if t is not None)
        if END in targets and len(targets) > 1:
            where = locs[targets.index(END)]
            self.add(where, "END in a fan-out: every target runs, so route to END alone")
            return None
        if len(set(targets)) != len(targets):
            self.add(loc, "a node is named twice: each target runs once")
            return None
        return targets

    def _destinations(self, value: Any, loc: str) -> Targets | None:
        """Where a router or a Command *may* go (it picks at run time): one target or a list,
        END among them if it may end the run."""
        items = value if isinstance(value, list) else [value]
        if not items:
            self.add(loc, "an empty list: name the nodes (or END) it may go to")
            return None
        found = [self._target(t, f"{loc}[{i}]" if isinstance(value, list) else loc)
                 for i, t in enumerate(items)]  # fmt: skip
        if any(t is None for t in found):
            return None
        return tuple(dict.fromkeys(t for t in found if t is not None))

    def _target(self, target: Any, loc: str) -> str | None:
        if target is None or target == "":
            self.add(loc, "missing target: name a node or END")
            return None
        if not isinstance(target, str):
            kind = type(target).__name__
            self.add(loc, f"a target is one node id or END (a string), not a {kind}")
            return None
        name = canonical_target(target)
        if name != END and name not in self.node_locs:
            self.add(loc, f"unknown target {name!r}{_suggest(name, self.node_locs)}")
            return None
        return name

    def _branch(self, route: DraftRoute) -> Branch | None:
        if route.router is not None:
            return self._router(route)
        if not route.cases:  # the reader reported why it has none
            return None
        cases: list[Case] = []
        ok = True
        for dc in route.cases:
            targets = self._targets(dc.target, dc.target_loc)
            condition = self._condition(dc.when, dc.when_loc)
            if targets is None or condition is None:
                ok = False
            else:
                cases.append(Case(condition, targets))
        default = None
        if route.default is not None:
            default = self._targets(route.default, route.default_loc, route.fan_locs)
            ok = ok and default is not None
        return Branch(tuple(cases), default) if ok else None

    def _router(self, route: DraftRoute) -> Branch | None:
        """A branch decided by a registered router, which may go to the nodes in ``to``."""
        name, loc = route.router, f"{route.loc}.router"
        ok = True
        if not isinstance(name, str) or not name:
            self.add(loc, "must name a registered router (a string)")
            ok = False
        elif (
            self.tools is not None
            and self.toolkit is not None
            and name not in self.toolkit.router_names()
        ):
            hint = _suggest(name, self.toolkit.router_names())
            self.add(loc, f"unknown router {name!r}{hint}")
            ok = False
        if route.router_to is None:
            self.add(f"{route.loc}.to", "list where the router may go: a node, END, or several")
            return None
        to = self._destinations(route.router_to, f"{route.loc}.to")
        return Branch((), None, router=str(name), to=to) if ok and to is not None else None

    def _condition(self, source: Any, loc: str) -> Any:
        if not isinstance(source, str):
            kind = "missing" if source is None else f"not a {type(source).__name__}"
            self.add(loc, f'{kind}: a condition is a string such as "score >= 7"')
            return None
        if not source.strip():
            self.add(loc, "missing condition")
            return None
        try:
            return compile_condition(source)
        except ConditionSyntaxError as exc:
            self.add(loc, str(exc))
            return None

    # -- joins and state ---------------------------------------------------------------------
    def _joins(self) -> dict[str, Targets]:
        joins: dict[str, Targets] = {}
        for dj in self.draft.joins:
            node = canonical_target(dj.node) if isinstance(dj.node, str) else dj.node
            if node == END or node not in self.node_locs:
                what = "END cannot wait for nodes" if node == END else f"unknown node {node!r}"
                self.add(dj.loc, f"a join runs a node of this graph: {what}")
                continue
            sources = self._join_sources(node, dj.sources, dj.loc)
            if sources is not None:
                joins[node] = sources
        return joins

    def _join_sources(self, node: str, sources: Any, loc: str) -> Targets | None:
        if not isinstance(sources, list) or len(sources) < 2:
            self.add(loc, f"list the nodes {node!r} waits for (two or more)")
            return None
        unknown = [s for s in sources if not isinstance(s, str) or s not in self.node_locs]
        if unknown:
            self.add(loc, f"{node!r} waits for unknown node {unknown[0]!r}"
                     f"{_suggest(str(unknown[0]), self.node_locs)}")  # fmt: skip
            return None
        if node in sources or len(set(sources)) != len(sources):
            self.add(loc, f"{node!r} cannot wait for itself, nor for a node twice")
            return None
        return tuple(sources)

    def _reducers(self) -> dict[str, str]:
        spec = self.draft.state
        if spec is None:
            return {}
        if not isinstance(spec, Mapping):
            self.add("state", 'must be an object: {"key": {"reducer": "append"}}')
            return {}
        reducers: dict[str, str] = {}
        for key, declared in spec.items():
            loc = f"state.{key}"
            name = declared.get("reducer") if isinstance(declared, Mapping) else None
            custom = self.toolkit.reducers() if self.toolkit is not None else {}
            trusted = self.tools is None and isinstance(name, str)
            if not isinstance(name, str) or not (name in REDUCERS or name in custom or trusted):
                names = [*REDUCERS, *custom]
                hint = _suggest(name, names) if isinstance(name, str) else ""
                self.add(f"{loc}.reducer", f"unknown reducer {name!r}{hint}; one of "
                         f"{', '.join(names)} (or one a toolkit registers)")  # fmt: skip
                continue
            reducers[key] = name  # "replace" too: declared, several writers may replace
        return reducers

    # -- graph shape -----------------------------------------------------------------------
    def _exits(self) -> None:
        routed = {r.source for r in self.draft.routes if isinstance(r.source, str)}
        routed.update(s for j in self.draft.joins if isinstance(j.sources, list)
                      for s in j.sources if isinstance(s, str))  # fmt: skip
        routed.update(n.id for n in self.draft.nodes if isinstance(n.id, str) and n.goto)
        for node_id, loc in self.node_locs.items():
            if node_id not in routed:
                self.add(loc, f"node {node_id!r} has no way out: add an edge (to END to finish)")

    def _reachability(self, entry: str | None) -> None:
        # Walk the routes as written, valid or not, so that one bad target is reported once
        # rather than again as every node behind it being "unreachable".
        successors = self._draft_successors()
        if entry is not None:
            reached = reachable_from(entry, successors)
            for node_id, loc in self.node_locs.items():
                if node_id not in reached:
                    self.add(loc, f"node {node_id!r} is unreachable from the entry {entry!r}")
            self._satisfiable_joins(entry, successors)
        if self.problems:
            return
        finishing = nodes_reaching_end(successors)
        for node_id, loc in self.node_locs.items():
            if node_id not in finishing:
                self.add(loc, f"no path from {node_id!r} to END: the run could never finish")

    def _satisfiable_joins(self, entry: str, successors: Mapping[str, set[str]]) -> None:
        """A join whose sources can only run after the join itself would wait for ever."""
        for dj in self.draft.joins:
            if dj.node == entry or not isinstance(dj.sources, list) or dj.node not in successors:
                continue
            without = {n: t - {dj.node} for n, t in successors.items() if n != dj.node}
            reached = reachable_from(entry, without)
            stuck = [s for s in dj.sources if isinstance(s, str) and s not in reached]
            if stuck and stuck[0] in self.node_locs:
                self.add(dj.loc, f"{dj.node!r} can never run: {stuck[0]!r} is only reached "
                         f"through {dj.node!r} itself")  # fmt: skip

    def _draft_successors(self) -> dict[str, set[str]]:
        succ: dict[str, set[str]] = {n: set() for n in self.node_locs}
        for route in self.draft.routes:
            if not isinstance(route.source, str) or route.source not in succ:
                continue
            targets = _flat([route.target, route.default, route.router_to,
                             *(c.target for c in route.cases)])  # fmt: skip
            succ[route.source].update(canonical_target(t) for t in targets)
        for node in self.draft.nodes:
            if isinstance(node.id, str) and node.id in succ and node.goto is not None:
                succ[node.id].update(canonical_target(t) for t in _flat([node.goto]))
            on_error = node.failure.get("on_error")
            if isinstance(node.id, str) and node.id in succ and isinstance(on_error, str):
                succ[node.id].add(canonical_target(on_error))
            asked = node.interrupt if isinstance(node.interrupt, Mapping) else {}
            on_timeout = asked.get("on_timeout")
            if isinstance(node.id, str) and node.id in succ and isinstance(on_timeout, str):
                succ[node.id].add(canonical_target(on_timeout))
        for join in self.draft.joins:
            if isinstance(join.sources, list) and isinstance(join.node, str):
                for source in join.sources:
                    if isinstance(source, str) and source in succ:
                        succ[source].add(join.node)
        return succ


def _flat(targets: list[Any]) -> list[str]:
    """Target names as written: strings, and the strings of fan-out lists."""
    flat: list[str] = []
    for target in targets:
        items = target if isinstance(target, list) else [target]
        flat.extend(t for t in items if isinstance(t, str))
    return flat


def reachable_from(start: str, successors: Mapping[str, Iterable[str]]) -> set[str]:
    """Every node reachable from ``start`` (``start`` included; END excluded)."""
    seen = {start}
    stack = [start]
    while stack:
        for nxt in successors.get(stack.pop(), ()):
            if nxt != END and nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def nodes_reaching_end(successors: Mapping[str, Iterable[str]]) -> set[str]:
    """Every node with some path to END."""
    predecessors: dict[str, set[str]] = {}
    for source, targets in successors.items():
        for target in targets:
            predecessors.setdefault(target, set()).add(source)
    return reachable_from(END, predecessors) - {END}
