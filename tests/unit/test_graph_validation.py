"""Graph validation: every problem, at the exact place the client wrote it, in every dialect."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from engine.errors import GraphValidationError, Problem
from engine.graph import Graph
from engine.validation import MAX_STEPS_CEILING, build_graph

TOOLS = {"fetch", "review", "score"}


def problems_of(doc: Any, tools: set[str] | None = TOOLS) -> list[Problem]:
    with pytest.raises(GraphValidationError) as caught:
        build_graph(doc, tools)
    problems = caught.value.problems
    assert str(caught.value) == "; ".join(str(p) for p in problems)
    return problems


def assert_problems(doc: Any, *expected: tuple[str, str]) -> None:
    """Exactly these problems (location, a fragment of the message), in this order."""
    problems = problems_of(doc)
    assert [p.location for p in problems] == [loc for loc, _ in expected], problems
    for problem, (_, fragment) in zip(problems, expected, strict=True):
        assert fragment in problem.message, problem


# -- one case per problem and dialect: (document, expected problems) ----------------------------
# Dialect 1: nodes {id: {tool, next}}, start_node. Dialect 2: nodes {id: tool}, edges {a: b}.
# Dialect 3: nodes [{id, tool}], edges [{from, to, condition?}], entry_node / entry_point.

UNKNOWN_TARGET = {
    "canonical edge": (
        {"entry": "a", "nodes": {"a": {"tool": "fetch"}}, "edges": {"a": "nowhere"}},
        [("edges.a", "unknown target 'nowhere'")],
    ),
    "canonical case": (
        {
            "entry": "a",
            "nodes": {"a": {"tool": "fetch"}},
            "branches": {"a": {"cases": [{"when": "x", "to": "nowhere"}], "default": "END"}},
        },
        [("branches.a.cases[0].to", "unknown target 'nowhere'")],
    ),
    "canonical default": (
        {
            "entry": "a",
            "nodes": {"a": {"tool": "fetch"}},
            "branches": {"a": {"cases": [{"when": "x", "to": "END"}], "default": "nowhere"}},
        },
        [("branches.a.default", "unknown target 'nowhere'")],
    ),
    "dialect1 next": (
        {"start_node": "a", "nodes": {"a": {"tool": "fetch", "next": "nowhere"}}},
        [("nodes.a.next", "unknown target 'nowhere'")],
    ),
    "dialect1 if_true": (
        {
            "start_node": "a",
            "nodes": {
                "a": {"tool": "fetch", "next": {"condition": "x", "if_true": "no", "if_false": "a"}}
            },
        },
        [("nodes.a.next.if_true", "unknown target 'no'")],
    ),
    "dialect1 if_false": (
        {
            "start_node": "a",
            "nodes": {
                "a": {
                    "tool": "fetch",
                    "next": {"condition": "x", "if_true": "end", "if_false": "no"},
                }
            },
        },
        [("nodes.a.next.if_false", "unknown target 'no'")],
    ),
    "dialect2": (
        {"nodes": {"a": "fetch"}, "edges": {"a": "nowhere"}},
        [("edges.a", "unknown target 'nowhere'")],
    ),
    "dialect3 to": (
        {
            "entry_node": "a",
            "nodes": [{"id": "a", "tool": "fetch"}],
            "edges": [{"from": "a", "to": "x"}],
        },
        [("edges[0].to", "unknown target 'x'")],
    ),
    "dialect3 target": (
        {
            "entry_point": "a",
            "nodes": [{"id": "a", "tool": "fetch"}],
            "edges": [{"source": "a", "target": "x"}],
        },
        [("edges[0].target", "unknown target 'x'")],
    ),
    "dialect3 conditional": (
        {
            "entry_node": "a",
            "nodes": [{"id": "a", "tool": "fetch"}],
            "edges": [{"from": "a", "to": "x", "condition": "y > 1"}, {"from": "a", "to": "END"}],
        },
        [("edges[0].to", "unknown target 'x'")],
    ),
}

UNKNOWN_TOOL = {
    "canonical": (
        {"entry": "a", "nodes": {"a": {"tool": "reveiw"}}, "edges": {"a": "END"}},
        [("nodes.a.tool", "unknown tool 'reveiw' (did you mean 'review'?)")],
    ),
    "dialect1": (
        {"start_node": "a", "nodes": {"a": {"tool": "reveiw", "next": "end"}}},
        [("nodes.a.tool", "unknown tool 'reveiw' (did you mean 'review'?)")],
    ),
    "dialect2": (
        {"nodes": {"a": "reveiw"}, "edges": {"a": "end"}},
        [("nodes.a", "unknown tool 'reveiw' (did you mean 'review'?)")],
    ),
    "dialect3 tool": (
        {
            "entry_node": "a",
            "nodes": [{"id": "a", "tool": "reveiw"}],
            "edges": [{"from": "a", "to": "END"}],
        },
        [("nodes[0].tool", "unknown tool 'reveiw' (did you mean 'review'?)")],
    ),
    "dialect3 function_name": (
        {
            "entry_node": "a",
            "nodes": [{"id": "a", "function_name": "reveiw"}],
            "edges": [{"from": "a", "to": "END"}],
        },
        [("nodes[0].function_name", "unknown tool 'reveiw' (did you mean 'review'?)")],
    ),
    "no close match": (
        {"entry": "a", "nodes": {"a": {"tool": "zzzzzz"}}, "edges": {"a": "END"}},
        [("nodes.a.tool", "unknown tool 'zzzzzz'")],
    ),
    "missing tool": (
        {"entry": "a", "nodes": {"a": {}}, "edges": {"a": "END"}},
        [("nodes.a.tool", "missing tool")],
    ),
}

MISSING_ENTRY = {
    "canonical": (
        {"nodes": {"a": {"tool": "fetch"}}, "edges": {"a": "END"}},
        [("entry", "missing entry node")],
    ),
    "dialect1": (
        # a node with "next" makes it dialect 1 even without start_node
        {"nodes": {"a": {"tool": "fetch", "next": "end"}}},
        [("start_node", "missing entry node")],
    ),
    "dialect3": (
        {"nodes": [{"id": "a", "tool": "fetch"}], "edges": [{"from": "a", "to": "END"}]},
        [("entry_node", "missing entry node")],
    ),
}

UNKNOWN_ENTRY = {
    "canonical": (
        {"entry": "fetc", "nodes": {"fetch": {"tool": "fetch"}}, "edges": {"fetch": "END"}},
        [("entry", "entry 'fetc' is not a node of this graph (did you mean 'fetch'?)")],
    ),
    "dialect1": (
        {"start_node": "b", "nodes": {"a": {"tool": "fetch", "next": "end"}}},
        [("start_node", "entry 'b' is not a node of this graph")],
    ),
    "dialect2 explicit": (
        {"entry": "b", "nodes": {"a": "fetch"}, "edges": {"a": "end"}},
        [("entry", "entry 'b' is not a node of this graph")],
    ),
    "dialect3 entry_point": (
        {
            "entry_point": "b",
            "nodes": [{"id": "a", "tool": "fetch"}],
            "edges": [{"from": "a", "to": "END"}],
        },
        [("entry_point", "entry 'b' is not a node of this graph")],
    ),
}

UNREACHABLE = {
    "canonical": (
        {
            "entry": "a",
            "nodes": {"a": {"tool": "fetch"}, "b": {"tool": "review"}},
            "edges": {"a": "END", "b": "END"},
        },
        [("nodes.b", "node 'b' is unreachable from the entry 'a'")],
    ),
    "dialect1": (
        {
            "start_node": "a",
            "nodes": {"a": {"tool": "fetch", "next": "end"}, "b": {"tool": "review", "next": "a"}},
        },
        [("nodes.b", "node 'b' is unreachable from the entry 'a'")],
    ),
    "dialect2": (
        {"nodes": {"a": "fetch", "b": "review"}, "edges": {"a": "end", "b": "end"}},
        [("nodes.b", "node 'b' is unreachable from the entry 'a'")],
    ),
    "dialect3": (
        {
            "entry_node": "a",
            "nodes": [{"id": "a", "tool": "fetch"}, {"id": "b", "tool": "review"}],
            "edges": [{"from": "a", "to": "END"}, {"from": "b", "to": "a"}],
        },
        [("nodes[1]", "node 'b' is unreachable from the entry 'a'")],
    ),
}


def _branch_doc(when: str) -> dict[str, Any]:
    return {
        "entry": "a",
        "nodes": {"a": {"tool": "fetch"}},
        "branches": {"a": {"cases": [{"when": when, "to": "END"}], "default": "a"}},
    }


def _dialect1_doc(when: str) -> dict[str, Any]:
    nxt = {"condition": when, "if_true": "end", "if_false": "a"}
    return {"start_node": "a", "nodes": {"a": {"tool": "fetch", "next": nxt}}}


def _dialect3_doc(when: str) -> dict[str, Any]:
    return {
        "entry_node": "a",
        "nodes": [{"id": "a", "tool": "fetch"}],
        "edges": [{"from": "a", "to": "END", "condition": when}, {"from": "a", "to": "a"}],
    }


CONDITION_SYNTAX = {
    "canonical": (_branch_doc("score >="), [("branches.a.cases[0].when", "'score >='")]),
    "dialect1": (_dialect1_doc("score >="), [("nodes.a.next.condition", "'score >='")]),
    "dialect3": (_dialect3_doc("score >="), [("edges[0].condition", "'score >='")]),
    "missing": (_branch_doc(" "), [("branches.a.cases[0].when", "missing condition")]),
}

UNKNOWN_FUNCTION = {
    "canonical": (
        _branch_doc("open(path)"),
        [("branches.a.cases[0].when", "function 'open' is not allowed")],
    ),
    "dialect1": (
        _dialect1_doc("open(path)"),
        [("nodes.a.next.condition", "function 'open' is not allowed")],
    ),
    "dialect3": (
        _dialect3_doc("open(path)"),
        [("edges[0].condition", "function 'open' is not allowed")],
    ),
}

NO_WAY_OUT = {
    "canonical": (
        {
            "entry": "a",
            "nodes": {"a": {"tool": "fetch"}, "b": {"tool": "review"}},
            "edges": {"a": "b"},
        },
        [("nodes.b", "node 'b' has no way out")],
    ),
    "dialect1": (
        {
            "start_node": "a",
            "nodes": {"a": {"tool": "fetch", "next": "b"}, "b": {"tool": "review"}},
        },
        [("nodes.b", "node 'b' has no way out")],
    ),
}

NO_PATH_TO_END = {
    "canonical": (
        {
            "entry": "a",
            "nodes": {"a": {"tool": "fetch"}, "b": {"tool": "review"}},
            "edges": {"a": "b", "b": "a"},
        },
        [("nodes.a", "no path from 'a' to END"), ("nodes.b", "no path from 'b' to END")],
    ),
    "canonical partial": (
        # c can finish, but once in the a <-> b loop a run never can
        {
            "entry": "c",
            "nodes": {"a": {"tool": "fetch"}, "b": {"tool": "review"}, "c": {"tool": "score"}},
            "edges": {"a": "b", "b": "a"},
            "branches": {"c": {"cases": [{"when": "x", "to": "END"}], "default": "a"}},
        },
        [("nodes.a", "no path from 'a' to END"), ("nodes.b", "no path from 'b' to END")],
    ),
    "dialect1": (
        {"start_node": "a", "nodes": {"a": {"tool": "fetch", "next": "a"}}},
        [("nodes.a", "the run could never finish")],
    ),
    "dialect2": (
        {"nodes": {"a": "fetch", "b": "review"}, "edges": {"a": "b", "b": "a"}},
        [("nodes.a", "no path from 'a' to END"), ("nodes.b", "no path from 'b' to END")],
    ),
    "dialect3": (
        {
            "entry_node": "a",
            "nodes": [{"id": "a", "tool": "fetch"}],
            "edges": [{"from": "a", "to": "a"}],
        },
        [("nodes[0]", "no path from 'a' to END")],
    ),
}

EMPTY = {
    # one problem: with no nodes, an entry could name nothing, so it is not checked
    "canonical": ({"entry": "a", "nodes": {}}, [("nodes", "the graph has no nodes")]),
    "dialect1": ({"start_node": "a", "nodes": {}}, [("nodes", "the graph has no nodes")]),
    "dialect3": ({"nodes": [], "edges": []}, [("nodes", "the graph has no nodes")]),
    "no nodes key": ({"entry": "a"}, [("nodes", "missing: a graph needs nodes")]),
    "nodes of the wrong type": ({"entry": "a", "nodes": "a"}, [("nodes", "missing")]),
}

RESERVED_END = {
    "canonical END": (
        {
            "entry": "a",
            "nodes": {"a": {"tool": "fetch"}, "END": {"tool": "review"}},
            "edges": {"a": "END"},
        },
        [("nodes.END", "'END' is reserved")],
    ),
    "canonical end": (
        {
            "entry": "a",
            "nodes": {"a": {"tool": "fetch"}, "end": {"tool": "review"}},
            "edges": {"a": "END"},
        },
        [("nodes.end", "'end' is reserved")],
    ),
    "dialect2": (
        {"nodes": {"a": "fetch", "end": "review"}, "edges": {"a": "end"}},
        [("nodes.end", "'end' is reserved")],
    ),
    "dialect3": (
        {
            "entry_node": "a",
            "nodes": [{"id": "a", "tool": "fetch"}, {"id": "END", "tool": "review"}],
            "edges": [{"from": "a", "to": "END"}],
        },
        [("nodes[1]", "'END' is reserved")],
    ),
}

DIALECT3_ONLY = {
    "duplicate node id": (
        {
            "entry_node": "a",
            "nodes": [{"id": "a", "tool": "fetch"}, {"node_id": "a", "tool": "review"}],
            "edges": [{"from": "a", "to": "END"}],
        },
        [("nodes[1]", "duplicate node id 'a'")],
    ),
    "fan-out into END": (
        {
            "entry_node": "a",
            "nodes": [{"id": "a", "tool": "fetch"}, {"id": "b", "tool": "review"}],
            "edges": [
                {"from": "a", "to": "b"},
                {"from": "b", "to": "END"},
                {"from": "a", "to": "END"},
            ],
        },
        [("edges[2].to", "END in a fan-out")],
    ),
    "node id missing": (
        {"entry_node": "a", "nodes": [{"tool": "fetch"}], "edges": []},
        [("nodes[0]", "non-empty string id"), ("entry_node", "not a node")],
    ),
    "edges not a list": (
        {"entry_node": "a", "nodes": [{"id": "a", "tool": "fetch"}], "edges": {"a": "END"}},
        [("edges", 'must be a list of edges {"from": "<node>", "to": "<node or END>"')],
    ),
    "edge not an object": (
        {"entry_node": "a", "nodes": [{"id": "a", "tool": "fetch"}], "edges": ["a->END"]},
        [("edges[0]", 'an edge must be an object: {"from": "<node>"')],
    ),
    "a join into END": (
        {
            "entry_node": "a",
            "nodes": [{"id": "a", "tool": "fetch"}],
            "edges": [{"from": ["a"], "to": "END"}],
        },
        [("edges[0].from", "a join runs a node of this graph: END cannot wait for nodes")],
    ),
    "source of the wrong type": (
        {
            "entry_node": "a",
            "nodes": [{"id": "a", "tool": "fetch"}],
            "edges": [{"source": {"id": "a"}, "target": "END"}],
        },
        [("edges[0].source", "must be a node id (a string), not dict")],
    ),
    "source missing": (
        {"entry_node": "a", "nodes": [{"id": "a", "tool": "fetch"}], "edges": [{"to": "END"}]},
        [("edges[0].from", "missing: name the node this edge leaves")],
    ),
    "unknown source": (
        {
            "entry_node": "a",
            "nodes": [{"id": "a", "tool": "fetch"}],
            "edges": [{"from": "a", "to": "END"}, {"from": "b", "to": "a"}],
        },
        [("edges[1].from", "route out of unknown node 'b'")],
    ),
    "END among several targets of one edge": (
        {
            "entry_node": "a",
            "nodes": [{"id": "a", "tool": "fetch"}, {"id": "b", "tool": "fetch"}],
            "edges": [{"from": "a", "to": ["b", "END"]}],
        },
        [("edges[0].to[1]", "END in a fan-out")],
    ),
    "condition of the wrong type": (
        {
            "entry_node": "a",
            "nodes": [{"id": "a", "tool": "fetch"}],
            "edges": [{"from": "a", "to": "END", "condition": ["x"]}, {"from": "a", "to": "a"}],
        },
        [("edges[0].condition", 'not a list: a condition is a string such as "score >= 7"')],
    ),
}

TWO_WAYS_OUT = {
    "canonical edge and branch": (
        {
            "entry": "a",
            "nodes": {"a": {"tool": "fetch"}},
            "edges": {"a": "END"},
            "branches": {"a": {"cases": [{"when": "x", "to": "END"}]}},
        },
        [("branches.a", "node 'a' has more than one way out")],
    ),
    "canonical route out of unknown node": (
        {"entry": "a", "nodes": {"a": {"tool": "fetch"}}, "edges": {"a": "END", "ghost": "a"}},
        [("edges.ghost", "route out of unknown node 'ghost'")],
    ),
    "canonical branch without cases": (
        {"entry": "a", "nodes": {"a": {"tool": "fetch"}}, "branches": {"a": {"to": "END"}}},
        [
            ("branches.a.cases", 'must be a list: a branch needs at least one case {"when"'),
        ],
    ),
    "canonical branch with no case": (
        {
            "entry": "a",
            "nodes": {"a": {"tool": "fetch"}},
            "branches": {"a": {"cases": [], "default": "END"}},
        },
        [("branches.a.cases", 'is empty: a branch needs at least one case {"when"')],
    ),
    "canonical branch not an object": (
        {"entry": "a", "nodes": {"a": {"tool": "fetch"}}, "branches": {"a": "END"}},
        [("branches.a", 'a branch must be an object: {"cases": [{"when"')],
    ),
    "canonical case not an object": (
        {
            "entry": "a",
            "nodes": {"a": {"tool": "fetch"}},
            "branches": {"a": {"cases": ["x > 1"], "default": "END"}},
        },
        [("branches.a.cases[0]", 'a case must be an object: {"when": "<condition>"')],
    ),
}

ALL_CASES = {
    f"{group}: {name}": case
    for group, table in {
        "unknown target": UNKNOWN_TARGET,
        "unknown tool": UNKNOWN_TOOL,
        "missing entry": MISSING_ENTRY,
        "unknown entry": UNKNOWN_ENTRY,
        "unreachable": UNREACHABLE,
        "condition syntax": CONDITION_SYNTAX,
        "unknown function": UNKNOWN_FUNCTION,
        "no way out": NO_WAY_OUT,
        "no path to END": NO_PATH_TO_END,
        "empty": EMPTY,
        "reserved END": RESERVED_END,
        "dialect 3": DIALECT3_ONLY,
        "two ways out": TWO_WAYS_OUT,
    }.items()
    for name, case in table.items()
}


@pytest.mark.parametrize(("doc", "expected"), ALL_CASES.values(), ids=ALL_CASES.keys())
def test_each_problem_is_reported_where_the_client_wrote_it(
    doc: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    assert_problems(doc, *expected)


@pytest.mark.parametrize("doc", [[{"id": "a"}], "graph", 42, None, True])
def test_a_graph_that_is_not_an_object_gets_one_problem(doc: Any) -> None:
    assert_problems(doc, ("$", "a graph must be a JSON object"))


@pytest.mark.parametrize("value", [0, -1, MAX_STEPS_CEILING + 1, "10", 2.5, True, [5]])
@pytest.mark.parametrize(
    "doc",
    [
        {"entry": "a", "nodes": {"a": {"tool": "fetch"}}, "edges": {"a": "END"}},
        {"start_node": "a", "nodes": {"a": {"tool": "fetch", "next": "end"}}},
        {"nodes": {"a": "fetch"}, "edges": {"a": "end"}},
        {
            "entry_node": "a",
            "nodes": [{"id": "a", "tool": "fetch"}],
            "edges": [{"from": "a", "to": "END"}],
        },
    ],
    ids=["canonical", "dialect1", "dialect2", "dialect3"],
)
def test_bad_max_steps_is_refused_in_every_dialect(doc: dict[str, Any], value: Any) -> None:
    assert_problems({**doc, "max_steps": value}, ("max_steps", f"from 1 to {MAX_STEPS_CEILING}"))


@pytest.mark.parametrize("value", [1, 60, MAX_STEPS_CEILING])
def test_good_max_steps_is_kept(value: int) -> None:
    doc = {
        "entry": "a",
        "nodes": {"a": {"tool": "fetch"}},
        "edges": {"a": "END"},
        "max_steps": value,
    }
    assert build_graph(doc, TOOLS).max_steps == value


def test_settings_must_be_an_object() -> None:
    doc = {"entry": "a", "nodes": {"a": {"tool": "fetch", "settings": [1]}}, "edges": {"a": "END"}}
    assert_problems(doc, ("nodes.a.settings", "settings must be an object"))


def test_every_problem_is_reported_at_once() -> None:
    # Given a graph with five independent mistakes
    doc = {
        "entry": "start",
        "max_steps": 0,
        "nodes": {
            "start": {"tool": "fetch"},
            "check": {"tool": "scroe"},
            "loose": {"tool": "review"},
        },
        "edges": {"start": "check", "loose": "END"},
        "branches": {"check": {"cases": [{"when": "score >", "to": "END"}], "default": "strat"}},
    }
    # When it is validated, Then each one is reported, with its location
    assert_problems(
        doc,
        ("nodes.check.tool", "unknown tool 'scroe' (did you mean 'score'?)"),
        ("branches.check.cases[0].when", "'score >'"),
        ("branches.check.default", "unknown target 'strat' (did you mean 'start'?)"),
        ("max_steps", "from 1 to"),
        ("nodes.loose", "unreachable from the entry 'start'"),
    )


def test_a_bad_branch_does_not_make_the_nodes_behind_it_unreachable() -> None:
    # Given a branch refused for its condition, whose targets are the only way to b
    doc = {
        "entry": "a",
        "nodes": {"a": {"tool": "fetch"}, "b": {"tool": "review"}},
        "branches": {"a": {"cases": [{"when": "x >", "to": "b"}], "default": "END"}},
        "edges": {"b": "END"},
    }
    # Then only the condition is reported, not b as unreachable besides
    assert_problems(doc, ("branches.a.cases[0].when", "'x >'"))


def test_unknown_tools_are_not_checked_without_a_registry() -> None:
    doc = {"entry": "a", "nodes": {"a": {"tool": "anything"}}, "edges": {"a": "END"}}
    assert build_graph(doc, None).nodes["a"].tool == "anything"


def test_unknown_fields_are_refused_each_where_it_is_written() -> None:
    # Given fields the engine does not know, at the top, on nodes, edges and branches
    doc = {
        "name": "review",
        "description": "a graph with extras",
        "entry": "a",
        "nodes": {"a": {"tool": "fetch", "description": "first"}, "b": {"tool": "score", "x": 1}},
        "edges": {"a": "b"},
        "branches": {
            "b": {
                "cases": [{"when": "x > 1", "to": "END", "label": "done"}],
                "default": "a",
                "y": 2,
            }
        },
    }
    # When it is built, Then each is refused (tests/unit/test_graph_keys.py has the messages)
    assert [p.location for p in problems_of(doc)] == [
        "description",
        "nodes.a.description",
        "nodes.b.x",
        "branches.b.cases[0].label",
        "branches.b.y",
    ]


def test_dialect3_unknown_fields_are_refused() -> None:
    doc = {
        "name": "g",
        "entry_point": "a",
        "nodes": [{"id": "a", "tool": "fetch", "label": "A", "position": {"x": 1}}],
        "edges": [{"source": "a", "target": "END", "id": "e1", "animated": True}],
    }
    assert [p.location for p in problems_of(doc)] == [
        "nodes[0].label",
        "nodes[0].position",
        "edges[0].id",
        "edges[0].animated",
    ]


# -- immutability --------------------------------------------------------------------------------
@pytest.fixture
def graph() -> Graph:
    return build_graph(
        {
            "entry": "a",
            "nodes": {"a": {"tool": "fetch", "settings": {"depth": 2}}, "b": {"tool": "score"}},
            "edges": {"a": "b"},
            "branches": {"b": {"cases": [{"when": "x > 1", "to": "END"}], "default": "a"}},
        },
        TOOLS,
    )


@pytest.mark.parametrize("attribute", ["name", "entry", "nodes", "edges", "branches", "max_steps"])
def test_a_graphs_attributes_cannot_be_reassigned(graph: Graph, attribute: str) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(graph, attribute, None)


def test_a_graphs_mappings_cannot_be_changed(graph: Graph) -> None:
    with pytest.raises(TypeError):
        graph.nodes["c"] = graph.nodes["a"]  # type: ignore[index]
    with pytest.raises(TypeError):
        del graph.nodes["a"]  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        graph.edges["a"] = "END"  # type: ignore[index]
    with pytest.raises(TypeError):
        graph.branches["a"] = graph.branches["b"]  # type: ignore[index]
    with pytest.raises(TypeError):
        graph.nodes["a"].settings["depth"] = 3  # type: ignore[index]


def test_a_graphs_parts_cannot_be_changed(graph: Graph) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        graph.nodes["a"].tool = "review"  # type: ignore[misc]
    branch = graph.branches["b"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        branch.default = "END"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        branch.cases[0].targets = ("a",)  # type: ignore[misc]
    assert isinstance(branch.cases, tuple)


def test_changing_the_source_document_or_to_dict_does_not_change_the_graph(graph: Graph) -> None:
    # Given the document a graph was built from
    settings = {"depth": 2}
    doc = {
        "entry": "a",
        "nodes": {"a": {"tool": "fetch", "settings": settings}},
        "edges": {"a": "END"},
    }
    built = build_graph(doc, TOOLS)
    before = built.to_dict()
    # When the document and an exported copy are changed
    settings["depth"] = 99
    doc["edges"]["a"] = "a"  # type: ignore[index]
    exported = built.to_dict()
    exported["edges"]["a"] = "elsewhere"
    exported["nodes"]["a"]["settings"]["depth"] = 7
    # Then the graph is as it was built
    assert built.to_dict() == before
    assert built.nodes["a"].settings["depth"] == 2
