"""Every accepted dialect of a graph definition becomes the same canonical graph."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.graph import END
from engine.tools import Toolkit, load_toolkits
from engine.validation import build_graph

TOOLS = {"fetch", "review", "score", "publish"}
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# A review loop: fetch -> review -> score -(quality >= 7)-> END, else back to review.
CANONICAL: dict[str, Any] = {
    "name": "review loop",
    "entry": "fetch",
    "nodes": {
        "fetch": {"tool": "fetch"},
        "review": {"tool": "review", "settings": {"strict": True}},
        "score": {"tool": "score"},
    },
    "edges": {"fetch": "review", "review": "score"},
    "branches": {"score": {"cases": [{"when": "quality >= 7", "to": "END"}], "default": "review"}},
}

DIALECT1: dict[str, Any] = {
    "name": "review loop",
    "start_node": "fetch",
    "nodes": {
        "fetch": {"tool": "fetch", "next": "review"},
        "review": {"tool": "review", "settings": {"strict": True}, "next": "score"},
        "score": {
            "tool": "score",
            "next": {"condition": "quality >= 7", "if_true": "end", "if_false": "review"},
        },
    },
}

DIALECT3: dict[str, Any] = {
    "name": "review loop",
    "entry_node": "fetch",
    "nodes": [
        {"node_id": "fetch", "tool": "fetch"},
        {"id": "review", "function_name": "review", "settings": {"strict": True}},
        {"id": "score", "tool": "score"},
    ],
    "edges": [
        {"from": "fetch", "to": "review"},
        {"source": "review", "target": "score"},
        {"from": "score", "to": "review"},  # the plain edge is the default, wherever it is
        {"from": "score", "to": "END", "condition": "quality >= 7"},
    ],
}


@pytest.mark.parametrize("doc", [CANONICAL, DIALECT1, DIALECT3], ids=["canonical", "d1", "d3"])
def test_each_dialect_converts_to_the_same_canonical_graph(doc: dict[str, Any]) -> None:
    graph = build_graph(doc, TOOLS)
    assert graph.to_dict() == CANONICAL
    assert graph == build_graph(CANONICAL, TOOLS)


def test_dialect2_is_a_chain_whose_entry_is_the_first_node() -> None:
    # Given nodes as {id: tool} and plain edges, the first node not named "a"
    doc = {
        "nodes": {"fetch": "fetch", "review": "review"},
        "edges": {"fetch": "review", "review": "end"},
    }
    # When built, Then the entry is the first node and the graph is the canonical chain
    graph = build_graph(doc, TOOLS)
    assert graph.to_dict() == {
        "name": "graph",
        "entry": "fetch",
        "nodes": {"fetch": {"tool": "fetch"}, "review": {"tool": "review"}},
        "edges": {"fetch": "review", "review": "END"},
        "branches": {},
    }


def test_dialect2_entry_follows_dict_order_not_names() -> None:
    doc = {"nodes": {"z": "publish", "a": "fetch"}, "edges": {"z": "a", "a": "END"}}
    assert build_graph(doc, TOOLS).entry == "z"


def test_dialect2_accepts_an_explicit_entry() -> None:
    doc = {"entry": "a", "nodes": {"z": "publish", "a": "fetch"}, "edges": {"a": "z", "z": "END"}}
    assert build_graph(doc, TOOLS).entry == "a"


def test_dialect2_node_without_an_outgoing_edge_ends_the_run() -> None:
    # Given the documented request of earlier engines: the last node has no edge out
    doc = {
        "nodes": {
            "extract": "fetch",
            "complexity": "review",
            "issues": "score",
            "suggest": "publish",
        },
        "edges": {"extract": "complexity", "complexity": "issues", "issues": "suggest"},
    }
    # When it is built
    graph = build_graph(doc, TOOLS)
    # Then the canonical form says explicitly that the run ends there
    assert graph.to_dict()["edges"] == {
        "extract": "complexity",
        "complexity": "issues",
        "issues": "suggest",
        "suggest": END,
    }


def test_dialect3_single_node_without_edges_ends_the_run() -> None:
    # Given one node and no edges at all
    doc = {"entry_node": "only", "nodes": [{"id": "only", "tool": "fetch"}], "edges": []}
    # When it is built, Then the node's way out is an explicit edge to END
    assert build_graph(doc, TOOLS).to_dict()["edges"] == {"only": END}


def test_dialect3_conditional_edges_are_a_way_out_and_get_no_implicit_end() -> None:
    # Given a node left only by a conditional edge, and a node no edge leaves
    doc = {
        "entry_node": "a",
        "nodes": [{"id": "a", "tool": "fetch"}, {"id": "b", "tool": "review"}],
        "edges": [{"from": "a", "to": "b", "condition": "x > 1"}],
    }
    # When it is built
    graph = build_graph(doc, TOOLS).to_dict()
    # Then only the node without any edge out gets the edge to END
    assert graph["edges"] == {"b": END}
    assert graph["branches"] == {"a": {"cases": [{"when": "x > 1", "to": "b"}]}}


@pytest.mark.parametrize("spelling", ["end", "END"])
def test_end_and_END_are_the_same_target(spelling: str) -> None:
    docs = [
        {"entry": "a", "nodes": {"a": {"tool": "fetch"}}, "edges": {"a": spelling}},
        {"start_node": "a", "nodes": {"a": {"tool": "fetch", "next": spelling}}},
        {"nodes": {"a": "fetch"}, "edges": {"a": spelling}},
        {
            "entry_node": "a",
            "nodes": [{"id": "a", "tool": "fetch"}],
            "edges": [{"from": "a", "to": spelling}],
        },
        {
            "entry": "a",
            "nodes": {"a": {"tool": "fetch"}},
            "branches": {"a": {"cases": [{"when": "x", "to": spelling}], "default": spelling}},
        },
    ]
    for doc in docs:
        graph = build_graph(doc, TOOLS)
        assert set(graph.successors("a")) == {END}, doc


def test_dialect3_conditions_keep_their_order_and_the_plain_edge_is_the_default() -> None:
    # Given three ways out of "score": two conditions, in this order, and a plain edge first
    doc = {
        "entry_point": "fetch",
        "nodes": [
            {"id": "fetch", "tool": "fetch"},
            {"id": "score", "tool": "score"},
            {"id": "publish", "tool": "publish"},
        ],
        "edges": [
            {"source": "fetch", "target": "score"},
            {"source": "score", "target": "fetch"},
            {"source": "score", "target": "publish", "condition": "quality >= 9"},
            {"source": "score", "target": "END", "condition": "quality >= 7"},
            {"source": "publish", "target": "END"},
        ],
    }
    # When built
    graph = build_graph(doc, TOOLS)
    # Then the cases are in document order, the plain edge is the default
    assert graph.to_dict()["branches"] == {
        "score": {
            "cases": [
                {"when": "quality >= 9", "to": "publish"},
                {"when": "quality >= 7", "to": "END"},
            ],
            "default": "fetch",
        }
    }
    # And routing takes the first case that holds, else the default
    assert graph.next_node("score", {"quality": 10}) == "publish"
    assert graph.next_node("score", {"quality": 8}) == END
    assert graph.next_node("score", {"quality": 1}) == "fetch"


def test_dialect3_conditional_edges_without_a_plain_edge_have_no_default() -> None:
    doc = {
        "entry_node": "a",
        "nodes": [{"id": "a", "tool": "fetch"}],
        "edges": [
            {"from": "a", "to": "a", "condition": "n < 3"},
            {"from": "a", "to": "END", "condition": "n >= 3"},
        ],
    }
    assert build_graph(doc, TOOLS).to_dict()["branches"] == {
        "a": {"cases": [{"when": "n < 3", "to": "a"}, {"when": "n >= 3", "to": "END"}]}
    }


def test_dialect1_condition_without_if_false_has_no_default() -> None:
    doc = {
        "start_node": "a",
        "nodes": {"a": {"tool": "fetch", "next": {"condition": "done", "if_true": "end"}}},
    }
    assert build_graph(doc, TOOLS).to_dict()["branches"] == {
        "a": {"cases": [{"when": "done", "to": "END"}]}
    }


def test_max_steps_and_settings_are_read_in_every_dialect() -> None:
    docs = [
        {
            "entry": "a",
            "nodes": {"a": {"tool": "fetch", "settings": {"k": 1}}},
            "edges": {"a": "END"},
        },
        {"start_node": "a", "nodes": {"a": {"tool": "fetch", "settings": {"k": 1}, "next": "end"}}},
        {
            "entry_node": "a",
            "nodes": [{"id": "a", "tool": "fetch", "settings": {"k": 1}}],
            "edges": [{"from": "a", "to": "END"}],
        },
    ]
    for doc in docs:
        graph = build_graph({**doc, "max_steps": 7}, TOOLS)
        assert graph.max_steps == 7
        assert dict(graph.nodes["a"].settings) == {"k": 1}
    assert (
        build_graph({"nodes": {"a": "fetch"}, "edges": {"a": "END"}, "max_steps": 7}).max_steps == 7
    )


@pytest.mark.parametrize(
    "doc",
    [
        CANONICAL,
        DIALECT1,
        DIALECT3,
        {"nodes": {"a": "fetch", "b": "review"}, "edges": {"a": "b", "b": "END"}, "max_steps": 9},
    ],
    ids=["canonical", "d1", "d3", "d2"],
)
def test_to_dict_round_trips(doc: dict[str, Any]) -> None:
    graph = build_graph(doc, TOOLS)
    again = build_graph(graph.to_dict(), TOOLS)
    assert again.to_dict() == graph.to_dict()
    assert again == graph
    # and the canonical form is plain JSON
    assert json.loads(json.dumps(graph.to_dict())) == graph.to_dict()


# -- the shipped examples ------------------------------------------------------------------------
def _example(name: str) -> dict[str, Any]:
    path = EXAMPLES / name
    if not path.exists():
        pytest.skip(f"{path} is not written yet")
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


@pytest.fixture(scope="module")
def code_review_tools() -> Toolkit:
    try:
        return load_toolkits(["engine.toolkits.code_review"])
    except ImportError as exc:
        pytest.skip(f"the code-review toolkit is not importable yet: {exc}")


def test_code_review_examples_build_into_the_same_graph(code_review_tools: Toolkit) -> None:
    # Given the canonical example and its dialect-1 twin
    canonical = build_graph(_example("code_review.json"), code_review_tools.names())
    compat = build_graph(_example("code_review_compat.json"), code_review_tools.names())
    # Then both build, with the same entry, nodes, edges and branches
    assert compat.entry == canonical.entry
    assert compat.edges == canonical.edges
    assert compat.branches == canonical.branches
    assert compat.nodes.keys() == canonical.nodes.keys()
    # And each node runs the same function (the twin may name a tool by one of its aliases)
    for node_id, node in canonical.nodes.items():
        twin = compat.nodes[node_id]
        assert code_review_tools.get(twin.tool).fn is code_review_tools.get(node.tool).fn, node_id
