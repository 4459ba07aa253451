"""Property tests of the pure graph checks: reachability, ways to END, and what validation accepts.

Random graphs are canonical documents over nodes ``n0..nk``: each node has a plain edge or a
branch (ordered cases plus an optional default) to random targets among the nodes and END.
The checks are compared with a deliberately different reference: a fixed point over all edges.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import GraphValidationError
from engine.graph import END, Graph
from engine.validation import build_graph, nodes_reaching_end, reachable_from

TOOL = "work"
PROPERTY_SETTINGS = settings(max_examples=100, deadline=None)


# -- reference implementations: fixed points, not graph searches ----------------------------------
def ref_reachable(start: str, successors: dict[str, set[str]]) -> set[str]:
    reached = {start}
    while True:
        grown = reached | {t for n in reached for t in successors.get(n, ()) if t != END}
        if grown == reached:
            return reached
        reached = grown


def ref_reaching_end(successors: dict[str, set[str]]) -> set[str]:
    finishing: set[str] = set()
    while True:
        grown = finishing | {
            n for n, targets in successors.items() if END in targets or targets & finishing
        }
        if grown == finishing:
            return finishing
        finishing = grown


# -- strategies ----------------------------------------------------------------------------------
@st.composite
def routes(draw: st.DrawFn, names: list[str]) -> dict[str, Any]:
    """A route for one node: ("edge", target) or ("branch", [targets], default or None)."""
    targets = st.sampled_from([*names, END])
    if draw(st.booleans()):
        return {"edge": draw(targets)}
    cases = draw(st.lists(targets, min_size=1, max_size=3))
    return {"cases": cases, "default": draw(st.none() | targets)}


@st.composite
def graph_docs(draw: st.DrawFn, max_nodes: int = 8) -> dict[str, Any]:
    """A canonical document with random routes; it may well be invalid."""
    size = draw(st.integers(min_value=1, max_value=max_nodes))
    names = [f"n{i}" for i in range(size)]
    entry = draw(st.sampled_from(names))
    doc: dict[str, Any] = {"entry": entry, "nodes": {}, "edges": {}, "branches": {}}
    for name in names:
        doc["nodes"][name] = {"tool": TOOL}
        route = draw(routes(names))
        if "edge" in route:
            doc["edges"][name] = route["edge"]
        else:
            branch: dict[str, Any] = {
                "cases": [{"when": f"x > {k}", "to": t} for k, t in enumerate(route["cases"])]
            }
            if route["default"] is not None:
                branch["default"] = route["default"]
            doc["branches"][name] = branch
    return doc


@st.composite
def valid_docs(draw: st.DrawFn) -> dict[str, Any]:
    """Valid by construction: a backbone n0 -> n1 -> ... -> END (each node's default), plus
    random extra cases, so every node is reachable from n0 and can reach END."""
    size = draw(st.integers(min_value=1, max_value=8))
    names = [f"n{i}" for i in range(size)]
    doc: dict[str, Any] = {"entry": "n0", "nodes": {}, "edges": {}, "branches": {}}
    for i, name in enumerate(names):
        doc["nodes"][name] = {"tool": TOOL}
        backbone = names[i + 1] if i + 1 < size else END
        extra = draw(st.lists(st.sampled_from([*names, END]), max_size=2))
        if not extra:
            doc["edges"][name] = backbone
            continue
        doc["branches"][name] = {
            "cases": [{"when": f"x == {k}", "to": t} for k, t in enumerate(extra)],
            "default": backbone,
        }
    return doc


def successors_of(doc: dict[str, Any]) -> dict[str, set[str]]:
    succ: dict[str, set[str]] = {name: set() for name in doc["nodes"]}
    for source, target in doc["edges"].items():
        succ[source].add(target)
    for source, branch in doc["branches"].items():
        succ[source].update(case["to"] for case in branch["cases"])
        if "default" in branch:
            succ[source].add(branch["default"])
    return succ


def graph_successors(graph: Graph) -> dict[str, set[str]]:
    return {node: set(graph.successors(node)) for node in graph.nodes}


# -- properties ----------------------------------------------------------------------------------
@PROPERTY_SETTINGS
@given(graph_docs())
def test_reachability_agrees_with_the_reference(doc: dict[str, Any]) -> None:
    succ = successors_of(doc)
    for start in succ:
        assert reachable_from(start, succ) == ref_reachable(start, succ)
    assert nodes_reaching_end(succ) == ref_reaching_end(succ)


@PROPERTY_SETTINGS
@given(graph_docs())
def test_validation_accepts_exactly_the_graphs_that_can_finish_from_everywhere(
    doc: dict[str, Any],
) -> None:
    # Given a random graph and what the reference says about it
    succ = successors_of(doc)
    unreachable = set(succ) - ref_reachable(doc["entry"], succ)
    stuck = set(succ) - ref_reaching_end(succ)
    # When it is validated
    try:
        graph = build_graph(doc, {TOOL})
    except GraphValidationError as exc:
        # Then a refusal names exactly the unreachable nodes, or else the stuck ones
        located = {p.location for p in exc.problems}
        expected = unreachable or stuck
        assert expected, exc.problems
        assert located == {f"nodes.{n}" for n in expected}
        return
    # Then an accepted graph reaches every node from its entry, and END from every node
    assert not unreachable and not stuck
    gsucc = graph_successors(graph)
    assert ref_reachable(graph.entry, gsucc) == set(graph.nodes)
    assert ref_reaching_end(gsucc) == set(graph.nodes)


@PROPERTY_SETTINGS
@given(valid_docs(), st.data())
def test_an_orphan_node_is_rejected_at_its_location(
    doc: dict[str, Any], data: st.DataObject
) -> None:
    # Given a valid graph
    build_graph(doc, {TOOL})
    # When a node nothing leads to is added, whatever its own way out
    target = data.draw(st.sampled_from([*doc["nodes"], END]), label="orphan's target")
    doc["nodes"]["orphan"] = {"tool": TOOL}
    doc["edges"]["orphan"] = target
    # Then validation refuses the graph, naming that node and only it
    try:
        build_graph(doc, {TOOL})
    except GraphValidationError as exc:
        assert [(p.location, p.message) for p in exc.problems] == [
            ("nodes.orphan", "node 'orphan' is unreachable from the entry 'n0'")
        ]
    else:
        raise AssertionError("a graph with an orphan node was accepted")


@PROPERTY_SETTINGS
@given(valid_docs())
def test_valid_graphs_round_trip_through_to_dict(doc: dict[str, Any]) -> None:
    graph = build_graph(doc, {TOOL})
    again = build_graph(graph.to_dict(), {TOOL})
    assert again == graph
    assert again.to_dict() == graph.to_dict()
    assert graph_successors(again) == successors_of(doc)


@PROPERTY_SETTINGS
@given(valid_docs(), st.integers(min_value=-1, max_value=3))
def test_routing_follows_the_first_true_case_else_the_default(doc: dict[str, Any], x: int) -> None:
    graph = build_graph(doc, {TOOL})
    for node, branch in doc["branches"].items():
        expected = next(
            (case["to"] for case in branch["cases"] if eval_case(case["when"], x)),
            branch["default"],
        )
        assert graph.next_node(node, {"x": x}) == expected
    for node, target in doc["edges"].items():
        assert graph.next_node(node, {"x": x}) == target


def eval_case(when: str, x: int) -> bool:
    """The generated conditions are all ``x == k``."""
    return x == int(when.removeprefix("x == "))


# -- malformed documents in every dialect -------------------------------------------------------
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.sampled_from(["", "a", "b", "END", "x > 1"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("ab"), inner),
    max_leaves=6,
)
DIALECT_DOCS: list[dict[str, Any]] = [
    {
        "entry": "a",
        "nodes": {"a": {"tool": TOOL}, "b": {"tool": TOOL}},
        "edges": {"a": "b"},
        "branches": {"b": {"cases": [{"when": "x > 1", "to": "END"}], "default": "a"}},
    },
    {
        "start_node": "a",
        "nodes": {
            "a": {"tool": TOOL, "next": "b"},
            "b": {"tool": TOOL, "next": {"condition": "x", "if_true": "end", "if_false": "a"}},
        },
    },
    {"nodes": {"a": TOOL, "b": TOOL}, "edges": {"a": "b", "b": "end"}},
    {
        "entry_node": "a",
        "nodes": [{"id": "a", "tool": TOOL}, {"node_id": "b", "function_name": TOOL}],
        "edges": [
            {"from": "a", "to": "b"},
            {"source": "b", "target": "END", "condition": "x"},
            {"from": "b", "to": "a"},
        ],
    },
]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    children = value.items() if isinstance(value, dict) else enumerate(value)
    if isinstance(value, dict | list):
        for key, child in children:
            found += _paths(child, (*prefix, key))
    return found


def _replaced(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = dict(doc) if isinstance(doc, dict) else list(doc)
    copy[path[0]] = _replaced(doc[path[0]], path[1:], value)
    return copy


@PROPERTY_SETTINGS
@given(st.sampled_from(DIALECT_DOCS), st.data(), JSON_VALUES)
def test_any_part_of_any_dialect_replaced_by_any_json_is_a_graph_or_located_problems(
    doc: dict[str, Any], data: st.DataObject, value: Any
) -> None:
    # Given a valid document in one dialect with one part replaced by arbitrary JSON
    path = data.draw(st.sampled_from(_paths(doc)[1:]))
    mangled = _replaced(doc, path, value)
    # When it is validated
    try:
        graph = build_graph(mangled, {TOOL})
    except GraphValidationError as exc:
        # Then it is refused with problems that each name a place in the document
        assert exc.problems and all(problem.location for problem in exc.problems)
    else:
        # Or it is a graph (the replacement was acceptable)
        assert isinstance(graph, Graph)
