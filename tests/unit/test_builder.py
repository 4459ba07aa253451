"""The Python builder writes the canonical JSON form, and is checked exactly as JSON is."""

from __future__ import annotations

import json
import operator
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest

from engine import reducers
from engine.builder import END, START, StateGraph, graph_document
from engine.errors import GraphValidationError
from engine.runner import InProcessRunner
from engine.toolkits import basics
from engine.tools import ToolContext, Toolkit, load_toolkits
from engine.validation import build_graph

EXAMPLES = Path(__file__).parents[2] / "examples"

toolkit = Toolkit("builder_tests")


@toolkit.tool(writes=["draft"])
def write_draft(state: Any, ctx: ToolContext) -> dict[str, Any]:
    return {"draft": state.get("draft", "") + "x", "tries": state.get("tries", 0) + 1}


@toolkit.tool(name="score_draft")
def score(state: Any, ctx: ToolContext) -> dict[str, Any]:
    return {"score": len(state["draft"])}


def test_a_loop_built_in_python_runs_like_its_json() -> None:
    # Given a loop written with LangGraph's names and tool functions
    graph = StateGraph("drafts", max_steps=20)
    graph.add_node("write", write_draft)
    graph.add_node(score)  # named after its tool
    graph.add_edge(START, "write")
    graph.add_edge("write", "score_draft")
    graph.add_conditional_edges("score_draft", {"score >= 3": END}, default="write")
    # When it is turned into JSON and run
    doc = graph.to_dict()
    result = InProcessRunner(toolkit).run(graph.compile(toolkit), {})
    # Then the JSON is the canonical form, and the run loops until the condition holds
    assert doc == {
        "name": "drafts",
        "entry": "write",
        "nodes": {"write": {"tool": "write_draft"}, "score_draft": {"tool": "score_draft"}},
        "edges": {"write": "score_draft"},
        "branches": {
            "score_draft": {"cases": [{"when": "score >= 3", "to": "END"}], "default": "write"}
        },
        "max_steps": 20,
    }
    assert result.status == "completed"
    assert result.state["draft"] == "xxx"


def test_the_parallel_example_is_written_in_python() -> None:
    # Given examples/parallel_research.json written with the builder
    graph = StateGraph("parallel_research", state={"notes": "append"})
    for name in ("plan", "search", "read", "write"):
        graph.add_node(name, "emit", settings={"key": "notes", "value": name})
    graph.add_node("grade", "fill", settings={"key": "notes", "template": "graded $doc"},
                   map={"over": "docs", "as": "doc", "max_concurrency": 20})  # fmt: skip
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "search")
    graph.add_edge("plan", "grade")  # a second edge out: a fan-out
    graph.add_edge("search", "read")
    graph.add_edge(["read", "grade"], "write")  # a join
    graph.set_finish_point("write")
    # Then it is the same graph as the JSON file
    example = json.loads((EXAMPLES / "parallel_research.json").read_text())
    example["name"] = "parallel_research"
    assert graph.compile() == build_graph(example)


def test_json_round_trips_through_the_builder() -> None:
    for path in [EXAMPLES / "code_review.json", *sorted((EXAMPLES / "langgraph").glob("*.json"))]:
        doc = json.loads(path.read_text())
        assert StateGraph.from_dict(doc).to_dict() == build_graph(doc).to_dict(), path


def test_a_builder_graph_is_validated_like_json() -> None:
    # Given a typo in a target and an unknown node option
    graph = StateGraph()
    graph.add_node("a", "increment", setings={"x": 1})
    graph.add_edge(START, "a")
    graph.add_edge("a", "ENDD")
    # Then compile reports both, at their JSON locations
    with pytest.raises(GraphValidationError) as caught:
        graph.compile(load_toolkits(["engine.toolkits.basics"]))
    assert [p.location for p in caught.value.problems] == ["nodes.a.setings", "edges.a"]


def test_reducers_from_a_typed_dict_as_in_langgraph() -> None:
    class State(TypedDict):
        jokes: Annotated[list[str], operator.add]
        notes: Annotated[list[str], reducers.append]
        best: Annotated[int, "max"]
        topic: str

    graph = StateGraph("jokes", State)
    assert graph.state == {"jokes": "add", "notes": "append", "best": "max"}


def test_an_unknown_reducer_function_is_refused_at_once() -> None:
    class State(TypedDict):
        jokes: Annotated[list[str], sorted]

    with pytest.raises(ValueError, match="not a reducer hopgraph knows"):
        StateGraph("jokes", State)


def test_compile_with_a_toolkit_checks_what_its_tools_write() -> None:
    # Given two parallel nodes whose tool declares it writes "draft", with no reducer
    graph = StateGraph().add_node("a", write_draft).add_node("b", write_draft)
    graph.add_node("start", "score_draft").add_edge(START, "start")
    graph.add_edge("start", "a").add_edge("start", "b").set_finish_point("a").set_finish_point("b")
    # Then compiling against the toolkit refuses it, as creating it through the API would
    with pytest.raises(GraphValidationError, match="no reducer"):
        graph.compile(toolkit)


def test_a_node_is_added_once() -> None:
    graph = StateGraph().add_node("a", "increment")
    with pytest.raises(ValueError, match="already present"):
        graph.add_node("a", "increment")


def test_graph_document_accepts_a_builder_a_graph_or_a_dict() -> None:
    graph = StateGraph().add_node("a", basics.toolkit.names()[0]).set_entry_point("a")
    graph.set_finish_point("a")
    doc = graph.to_dict()
    assert graph_document(graph) == doc
    assert graph_document(graph.compile()) == build_graph(doc).to_dict()
    assert graph_document(doc) == doc
    with pytest.raises(TypeError, match="not a graph"):
        graph_document(42)


def test_the_readme_example_builds_the_parallel_example() -> None:
    # Given the README's Python block that uses the builder
    readme = (EXAMPLES.parent / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in readme.split("```python\n")[1:]]
    (block,) = [b for b in blocks if "from engine.builder import" in b]
    # When it runs
    scope: dict[str, Any] = {}
    exec(block, scope)
    # Then it is examples/parallel_research.json, and back again
    example = json.loads((EXAMPLES / "parallel_research.json").read_text())
    assert scope["compiled"] == build_graph({**example, "name": "parallel_research"})
    assert scope["same"].to_dict() == scope["doc"]
