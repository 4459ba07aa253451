"""Nothing in a graph is silently ignored: unknown keys are refused where they are written,
and what a document declares is honoured (a dialect 3 map, an explicit replace, the name)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from engine.dialects import read_draft
from engine.errors import GraphValidationError, Problem
from engine.keys import ELSEWHERE, SHAPES, unknown_keys
from engine.runner import InProcessRunner
from engine.tools import ToolContext, Toolkit
from engine.validation import build_graph

TOOLS = {"fetch", "review", "score"}


def problems_of(doc: Any) -> list[Problem]:
    with pytest.raises(GraphValidationError) as caught:
        build_graph(doc, TOOLS)
    return caught.value.problems


def chain(**extra: Any) -> dict[str, Any]:
    return {"entry": "a", "nodes": {"a": {"tool": "fetch"}}, "edges": {"a": "END"}, **extra}


# Where a misspelt key is refused, in each shape of each dialect: (document, location, words)
TYPOS = {
    "graph": (chain(max_step=3), "max_step", "did you mean 'max_steps'?"),
    "node": (
        {"entry": "a", "nodes": {"a": {"tool": "fetch", "setings": {}}}, "edges": {"a": "END"}},
        "nodes.a.setings",
        "did you mean 'settings'?",
    ),
    "map": (
        {
            "entry": "a",
            "nodes": {"a": {"tool": "fetch", "map": {"over": "x", "as": "y", "max_concurency": 2}}},
            "edges": {"a": "END"},
        },
        "nodes.a.map.max_concurency",
        "did you mean 'max_concurrency'?",
    ),
    "branch": (
        {
            "entry": "a",
            "nodes": {"a": {"tool": "fetch"}},
            "branches": {"a": {"cases": [{"when": "x", "to": "END"}], "defualt": "END"}},
        },
        "branches.a.defualt",
        "did you mean 'default'?",
    ),
    "case": (
        {
            "entry": "a",
            "nodes": {"a": {"tool": "fetch"}},
            "branches": {"a": {"cases": [{"when": "x", "to": "END", "too": "a"}]}},
        },
        "branches.a.cases[0].too",
        "did you mean 'to'?",
    ),
    "state key": (
        chain(state={"notes": {"reducer": "append", "reducers": "add"}}),
        "state.notes.reducers",
        "did you mean 'reducer'?",
    ),
    "dialect 1 next": (
        {
            "start_node": "a",
            "nodes": {
                "a": {
                    "tool": "fetch",
                    "next": {"condition": "x", "if_true": "END", "if_flase": "END"},
                }
            },
        },
        "nodes.a.next.if_flase",
        "did you mean 'if_false'?",
    ),
    "dialect 2": (
        {"nodes": {"a": "fetch"}, "edges": {}, "entry_pont": "a"},
        "entry_pont",
        "did you mean",
    ),
    "dialect 3 edge": (
        {
            "entry_node": "a",
            "nodes": [{"id": "a", "tool": "fetch"}],
            "edges": [{"from": "a", "to": "END", "when": "x"}],
        },
        "edges[0].when",
        "an edge has from, source, to, target and condition",
    ),
    "dialect 3 node": (
        {"entry_node": "a", "nodes": [{"id": "a", "tool": "fetch", "setting": {}}], "edges": []},
        "nodes[0].setting",
        "did you mean 'settings'?",
    ),
}


@pytest.mark.parametrize("case", TYPOS.values(), ids=list(TYPOS))
def test_a_misspelt_key_is_refused_where_it_is_written(case: tuple[Any, str, str]) -> None:
    # Given a graph with one misspelt key; When it is built; Then that key alone is refused
    doc, location, words = case
    problems = problems_of(doc)
    assert [p.location for p in problems] == [location], problems
    assert words in problems[0].message
    assert "unknown key" in problems[0].message


def test_a_misspelt_setting_used_to_change_the_result_silently() -> None:
    # Given a node whose "setings" would have been dropped, the run taking the default value
    toolkit = Toolkit("t")

    @toolkit.tool()
    def emit(state: Any, ctx: ToolContext) -> dict[str, Any]:
        return {"out": ctx.settings.get("value", "default")}

    doc = {"entry": "a", "nodes": {"a": {"tool": "emit", "setings": {"value": "mine"}}},
           "edges": {"a": "END"}}  # fmt: skip
    # When it is built; Then it is refused instead of running with "default"
    with pytest.raises(GraphValidationError, match="did you mean 'settings'"):
        build_graph(doc, toolkit.names())
    # and spelt right, the setting reaches the tool
    doc["nodes"]["a"]["settings"] = doc["nodes"]["a"].pop("setings")
    assert InProcessRunner(toolkit).run(build_graph(doc, toolkit.names())).state["out"] == "mine"


@pytest.mark.parametrize(
    ("key", "points_to"),
    [
        ("checkpointer", "every hopgraph run is durable"),
        ("recursion_limit", '"max_steps"'),
        ("conditional_edges", '"branches"'),
        ("entry_point", '"entry"'),
        ("initial_state", "POST /runs"),
    ],
)
def test_a_langgraph_key_points_to_the_hopgraph_equivalent(key: str, points_to: str) -> None:
    problems = problems_of(chain(**{key: "x"}))
    assert [p.location for p in problems] == [key]
    assert points_to in problems[0].message


def test_the_entry_hint_names_the_entry_key_of_the_documents_dialect() -> None:
    doc = {"start": "a", "nodes": {"a": {"tool": "fetch", "next": "END"}}, "start_node": "a"}
    (problem,) = problems_of(doc)
    assert problem.location == "start"
    assert problem.message.endswith('the entry node is "start_node"')


def test_keys_are_checked_in_every_node_and_reported_all_at_once() -> None:
    doc = {
        "entry": "a",
        "nodes": {"a": {"tool": "fetch", "reducer": "append"}, "b": {"tool": "review", "x": 1}},
        "edges": {"a": "b", "b": "END"},
        "checkpointer": "memory",
    }
    problems = problems_of(doc)
    assert [p.location for p in problems] == ["nodes.a.reducer", "nodes.b.x", "checkpointer"]
    assert "belongs to a state key" in problems[0].message
    assert (
        "a node has tool, settings, map, goto, defer, retry, timeout_s, on_error, wait, "
        "interrupt, graph, input and output" in problems[1].message
    )


def test_settings_are_the_tools_own_and_not_checked() -> None:
    doc = {"entry": "a", "nodes": {"a": {"tool": "fetch", "settings": {"anything": {"x": 1}}}},
           "edges": {"a": "END"}}  # fmt: skip
    assert build_graph(doc, TOOLS).nodes["a"].settings == {"anything": {"x": 1}}


def test_a_key_of_another_shape_is_known_only_there() -> None:
    # "when" is a case's key, not a node's
    doc = {"entry": "a", "nodes": {"a": {"tool": "fetch", "when": "x"}}, "edges": {"a": "END"}}
    assert [p.location for p in problems_of(doc)] == ["nodes.a.when"]


def test_the_table_names_only_shapes_it_defines() -> None:
    for shape, keys in SHAPES.items():
        for key, child in keys.items():
            if child is not None:
                assert child.strip("{}[]") in SHAPES, (shape, key, child)
    assert not set(ELSEWHERE) & set(SHAPES["canonical"])


def test_unknown_keys_walks_only_what_it_knows() -> None:
    # a value of the wrong type is the readers' to report, not a crash here
    assert unknown_keys({"nodes": ["not", "an", "object"], "state": 3}, "canonical") == []


# -- what a document declares is honoured -------------------------------------------------------
MAP = {"over": "docs", "as": "doc", "max_concurrency": 4}


def test_dialect3_honours_a_nodes_map() -> None:
    doc = {
        "entry_node": "grade",
        "nodes": [{"id": "grade", "tool": "fetch", "map": MAP}],
        "edges": [],
    }
    graph = build_graph(doc, TOOLS)
    node = graph.nodes["grade"]
    assert node.map is not None
    assert (node.map.over, node.map.as_, node.map.max_concurrency) == ("docs", "doc", 4)
    assert graph.to_dict()["nodes"]["grade"]["map"] == MAP


def test_dialect3_map_is_validated_like_the_canonical_one() -> None:
    doc = {"entry_node": "a", "nodes": [{"id": "a", "tool": "fetch", "map": {"over": "xs"}}],
           "edges": []}  # fmt: skip
    assert [p.location for p in problems_of(doc)] == ["nodes[0].map.as"]


def test_an_explicit_replace_lets_two_writers_replace_in_merge_order() -> None:
    # Given two parallel writers of "winner", declared {"reducer": "replace"}
    toolkit = Toolkit("t")

    @toolkit.tool(writes=["winner"])
    def name_me(state: Any, ctx: ToolContext) -> dict[str, Any]:
        return {"winner": ctx.node}

    doc = {
        "entry": "start",
        "state": {"winner": {"reducer": "replace"}},
        "nodes": {n: {"tool": "name_me"} for n in ("start", "a", "b")},
        "edges": {"start": ["a", "b"], "a": "END", "b": "END"},
    }
    # When it is built (with the tools' declared writes) and run
    graph = build_graph(doc, toolkit.names(), {"name_me": ["winner"]})
    result = InProcessRunner(toolkit).run(graph)
    # Then the declaration is kept, and the last writer in merge order wins
    assert graph.to_dict()["state"] == {"winner": {"reducer": "replace"}}
    assert result.status == "completed", result.error
    assert result.state["winner"] == "b"


def test_without_the_declaration_two_writers_still_conflict() -> None:
    doc = {
        "entry": "start",
        "nodes": {n: {"tool": "name_me"} for n in ("start", "a", "b")},
        "edges": {"start": ["a", "b"], "a": "END", "b": "END"},
    }
    with pytest.raises(GraphValidationError, match="no reducer"):
        build_graph(doc, {"name_me"}, {"name_me": ["winner"]})


@pytest.mark.parametrize("name", [{"x": 1}, ["a"], 3, None])
def test_a_name_that_is_not_a_string_is_refused(name: Any) -> None:
    problems = problems_of(chain(name=name))
    assert [p.location for p in problems] == ["name"]
    assert "must be a string" in problems[0].message


def test_a_string_name_is_kept_and_a_missing_one_is_graph() -> None:
    assert build_graph(chain(name="review"), TOOLS).name == "review"
    assert build_graph(chain(), TOOLS).name == "graph"


# -- properties: the table and the canonical writer agree ---------------------------------------
EXAMPLES = Path(__file__).parents[2] / "examples"
EXAMPLE_DOCS = [
    json.loads(p.read_text()) for p in sorted(EXAMPLES.rglob("*.json")) if "nodes" in p.read_text()
]


def objects_of(value: Any, shape: str, loc: str = "") -> list[tuple[dict[str, Any], str, str]]:
    """Every object the table describes in ``value``: (object, its shape, its location)."""
    if not isinstance(value, dict):
        return []
    found = [(value, shape, loc)]
    for key, child in SHAPES[shape].items():
        where = f"{loc}.{key}" if loc else key
        inner = value.get(key)
        if child is None or inner is None:
            continue
        if child.startswith("{") and isinstance(inner, dict):
            for name, item in inner.items():
                found += objects_of(item, child[1:-1], f"{where}.{name}")
        elif child.startswith("[") and isinstance(inner, list):
            for i, item in enumerate(inner):
                found += objects_of(item, child[1:-1], f"{where}[{i}]")
        elif child[0] not in "{[":
            found += objects_of(inner, child, where)
    return found


@pytest.mark.parametrize("doc", EXAMPLE_DOCS)
def test_the_canonical_form_uses_only_keys_of_the_table(doc: dict[str, Any]) -> None:
    canonical = build_graph(doc).to_dict()
    assert unknown_keys(canonical, "canonical") == []
    assert build_graph(canonical) == build_graph(doc)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), key=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1))
def test_a_key_added_to_any_object_is_refused_there_alone(data: st.DataObject, key: str) -> None:
    # Given any example, in its own dialect, and any object in it that the table describes
    doc = copy.deepcopy(data.draw(st.sampled_from(EXAMPLE_DOCS)))
    dialect = read_draft(doc).dialect
    target, shape, loc = data.draw(st.sampled_from(objects_of(doc, dialect)))
    assume(key not in SHAPES[shape])
    # When a key the shape does not have is added there
    target[key] = 1
    # Then that key is the one problem, at its location
    with pytest.raises(GraphValidationError) as caught:
        build_graph(doc)
    assert [p.location for p in caught.value.problems] == [f"{loc}.{key}" if loc else key]


@pytest.mark.parametrize(
    ("path", "stray", "where"),
    [
        ("code_review.json", ("nodes", "extract", "next"), "nodes.extract.next"),
        ("code_review.json", ("start_node",), "start_node"),
        ("code_review_compat.json", ("entry",), "entry"),
        ("code_review_compat.json", ("edges",), "edges"),
    ],
)
def test_a_key_of_the_other_dialect_does_not_switch_the_document(
    path: str, stray: tuple[str, ...], where: str
) -> None:
    # Given an example, and a key that belongs to the other dialect with node objects
    doc = json.loads((EXAMPLES / path).read_text())
    dialect = read_draft(doc).dialect
    target = doc
    for part in stray[:-1]:
        target = target[part]
    target[stray[-1]] = "extract"
    # Then the document keeps its dialect, and the stray key is the one problem
    assert read_draft(doc).dialect == dialect
    with pytest.raises(GraphValidationError) as caught:
        build_graph(doc)
    assert [p.location for p in caught.value.problems] == [where]
