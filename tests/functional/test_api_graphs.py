"""``/graphs`` through the Lambda handler: create in every dialect, refuse bad graphs with
every problem and its location, list, read, render; and the body limit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from functions.api import examples
from functions.api.app import MAX_BODY_BYTES
from tests.functional.api_harness import ApiStack, api_stack


@pytest.fixture(scope="module")
def stack() -> Iterator[ApiStack]:
    # One moto stack for the module: these tests do not depend on what others stored.
    with pytest.MonkeyPatch.context() as monkeypatch, api_stack(monkeypatch) as s:
        yield s


def create(stack: ApiStack, doc: Any) -> str:
    reply = stack.call("http_create_graph", body=doc)
    assert reply.status == 201, reply.text
    return str(reply.json()["graph_id"])


def all_graphs(stack: ApiStack) -> list[str]:
    """Every stored graph id, following the pages."""
    ids: list[str] = []
    query: dict[str, Any] = {"limit": 200}
    while True:
        page = stack.call("http_list_graphs", query=query).json()
        ids += [g["graph_id"] for g in page["items"]]
        if page["next_cursor"] is None:
            return ids
        query["cursor"] = page["next_cursor"]


# -- create ---------------------------------------------------------------------------------
def test_the_event_creates_the_code_review_graph(stack: ApiStack) -> None:
    # Given the sample event as API Gateway delivers it, unchanged
    # When the handler receives it
    reply = stack.call("http_create_graph")
    # Then the graph is created and answered in canonical form
    assert reply.status == 201
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert body["graph_id"].startswith("g_")
    assert body["name"] == "code_review"
    assert body["graph"] == examples.CANONICAL
    assert body["created_at"].endswith("Z")


@pytest.mark.parametrize("dialect", ["canonical", "dialect1", "dialect2", "dialect3"])
def test_every_dialect_is_accepted_and_stored_canonically(stack: ApiStack, dialect: str) -> None:
    # Given the code-review graph written in one dialect
    doc = examples.GRAPH_EXAMPLES[dialect]["value"]
    # When it is posted
    reply = stack.call("http_create_graph", body=doc)
    # Then it is stored in the canonical form, which reads back the same
    assert reply.status == 201, reply.text
    created = reply.json()
    assert set(created["graph"]) >= {"entry", "nodes", "edges", "branches"}
    assert created["graph"]["entry"] == "extract"
    read = stack.call("http_get_graph", path=f"/graphs/{created['graph_id']}")
    assert read.status == 200
    assert read.json() == created


BAD_GRAPHS: dict[str, tuple[dict[str, Any], list[tuple[str, str]]]] = {
    "canonical": (
        {
            "entry": "extract",
            "nodes": {
                "extract": {"tool": "extract_function"},
                "score": {"tool": "evaluate_quality"},
            },
            "edges": {"extract": "scor"},
            "branches": {
                "score": {"cases": [{"when": "quality_score >=", "to": "END"}], "default": "END"}
            },
        },
        [
            ("nodes.extract.tool", "unknown tool 'extract_function' (did you mean"),
            ("edges.extract", "unknown target 'scor' (did you mean 'score'?)"),
            ("branches.score.cases[0].when", "condition 'quality_score >=': invalid syntax"),
            ("nodes.score", "node 'score' is unreachable from the entry 'extract'"),
        ],
    ),
    "dialect1": (
        {
            "start_node": "begin",
            "nodes": {
                "extract": {
                    "tool": "extract_functions",
                    "next": {"condition": "import os", "if_true": "end", "if_false": "nowhere"},
                }
            },
        },
        [
            ("start_node", "entry 'begin' is not a node of this graph"),
            ("nodes.extract.next.condition", "condition 'import os': invalid syntax"),
            ("nodes.extract.next.if_false", "unknown target 'nowhere'"),
        ],
    ),
    "dialect2": (
        {"nodes": {"a": "extract_functions", "b": "no_such_tool"}, "edges": {"a": "c"}},
        [
            ("nodes.b", "unknown tool 'no_such_tool'"),
            ("edges.a", "unknown target 'c'"),
            ("nodes.b", "node 'b' is unreachable from the entry 'a'"),
        ],
    ),
    "dialect3": (
        {
            "entry_point": "a",
            "nodes": [
                {"node_id": "a", "function_name": "extract_functions"},
                {"function_name": "detect_issues"},
            ],
            "edges": [
                {"from": "a", "to": "END"},
                {"from": "a", "to": "b"},
                {"from": "a", "to": "END", "condition": "x >"},
            ],
        },
        [
            ("nodes[1]", "a node needs a non-empty string id"),
            ("edges[2].condition", "condition 'x >': invalid syntax"),
            ("edges[1].to", "unknown target 'b'"),
        ],
    ),
}


@pytest.mark.parametrize("route", ["http_create_graph", "http_compat_create_graph"])
@pytest.mark.parametrize("dialect", sorted(BAD_GRAPHS))
def test_a_bad_graph_gets_422_with_every_problem_and_its_location(
    stack: ApiStack, dialect: str, route: str
) -> None:
    # Given a graph with several problems, written in one dialect
    doc, expected = BAD_GRAPHS[dialect]
    before = all_graphs(stack)
    # When it is posted to either create route
    reply = stack.call(route, body=doc)
    # Then every problem is listed, each at its location in the document as sent
    assert reply.status == 422
    assert reply.error["type"] == "graph_invalid"
    assert reply.error["message"] == f"the graph definition has {len(expected)} problems"
    problems = reply.problems
    assert len(problems) == len(expected)
    for (location, message), (want_location, want_start) in zip(problems, expected, strict=True):
        assert location == want_location
        assert message.startswith(want_start), message
    # And nothing was stored
    assert all_graphs(stack) == before


@pytest.mark.parametrize(
    ("body", "location"),
    [([1, 2], "body"), ("a graph", "body"), (None, "body")],
    ids=["list", "string", "null"],
)
def test_a_body_that_is_not_an_object_is_422_with_its_location(
    stack: ApiStack, body: Any, location: str
) -> None:
    reply = stack.call("http_create_graph", raw_body=json.dumps(body))
    assert reply.status == 422
    assert reply.error["type"] == "request_invalid"
    assert [loc for loc, _ in reply.problems] == [location]


def test_an_object_without_nodes_is_a_graph_problem(stack: ApiStack) -> None:
    reply = stack.call("http_create_graph", body={"name": "empty"})
    assert reply.status == 422
    assert reply.error["type"] == "graph_invalid"
    assert ("nodes", "missing: a graph needs nodes") in reply.problems


@pytest.mark.parametrize("raw", ['{"nodes": ', "{'nodes': {}}", "nodes=1"])
def test_unparseable_json_is_400_and_says_where(stack: ApiStack, raw: str) -> None:
    reply = stack.call("http_create_graph", raw_body=raw)
    assert reply.status == 400
    assert reply.error["type"] == "invalid_json"
    assert reply.error["message"].startswith("the body is not valid JSON")
    assert "(at character " in reply.error["message"]


def test_a_body_over_the_limit_is_413_before_parsing(stack: ApiStack) -> None:
    # Given a body one byte over the limit that is not even JSON
    raw = "x" * (MAX_BODY_BYTES + 1)
    # When it is posted
    reply = stack.call("http_create_graph", raw_body=raw)
    # Then it is refused for its size, not its syntax
    assert reply.status == 413
    assert reply.error["type"] == "payload_too_large"
    assert str(MAX_BODY_BYTES) in reply.error["message"]


def test_a_body_at_the_limit_is_parsed(stack: ApiStack) -> None:
    # Given a graph padded with white space to exactly the limit (an unknown key is refused)
    text = json.dumps(examples.CANONICAL)
    raw = text + " " * (MAX_BODY_BYTES - len(text))
    assert len(raw) == MAX_BODY_BYTES
    # Then it is accepted
    assert stack.call("http_create_graph", raw_body=raw).status == 201


def test_a_body_without_content_length_is_still_limited(stack: ApiStack) -> None:
    # Given an oversized body whose content-length header was dropped
    from tests.functional.api_harness import http_event, invoke

    event = http_event("http_create_graph", raw_body="y" * (MAX_BODY_BYTES + 10))
    del event["headers"]["content-length"]
    # Then the body is counted as it arrives
    assert invoke(event).status == 413


# -- read -----------------------------------------------------------------------------------
def test_list_graphs_pages_through_every_graph_once(stack: ApiStack) -> None:
    # Given three more graphs
    before = all_graphs(stack)
    created = [create(stack, dict(examples.DIALECT2, name=f"g{i}")) for i in range(3)]
    # When the graphs are listed two at a time
    seen: list[str] = []
    pages: list[dict[str, Any]] = []
    query: dict[str, Any] = {"limit": 2}
    while True:
        reply = stack.call("http_list_graphs", query=query)
        assert reply.status == 200
        pages.append(reply.json())
        seen += [g["graph_id"] for g in pages[-1]["items"]]
        if pages[-1]["next_cursor"] is None:
            break
        query["cursor"] = pages[-1]["next_cursor"]
    # Then every graph is listed exactly once, newest first, in pages of at most two
    assert sorted(seen) == sorted(before + created)
    assert all(len(p["items"]) <= 2 for p in pages)
    stamps = [g["created_at"] for p in pages for g in p["items"]]
    assert stamps == sorted(stamps, reverse=True)


@pytest.mark.parametrize("query", [{"limit": 0}, {"limit": 201}, {"limit": "ten"}])
def test_a_bad_page_size_is_422_at_query_limit(stack: ApiStack, query: dict[str, Any]) -> None:
    reply = stack.call("http_list_graphs", query=query)
    assert reply.status == 422
    assert [loc for loc, _ in reply.problems] == ["query.limit"]


@pytest.mark.parametrize("name", ["http_get_graph", "http_graph_mermaid"], ids=["graph", "mermaid"])
def test_an_unknown_graph_is_404(stack: ApiStack, name: str) -> None:
    reply = stack.call(name)  # the events name a graph this stack never created
    assert reply.status == 404
    assert reply.error == {
        "type": "not_found",
        "message": f"graph '{examples.EXAMPLE_GRAPH_ID}' not found",
    }


def test_mermaid_is_text_by_default_and_json_on_request(stack: ApiStack) -> None:
    graph_id = create(stack, examples.CANONICAL)
    path = f"/graphs/{graph_id}/mermaid"
    text = stack.call("http_graph_mermaid", path=path)
    assert text.status == 200
    assert text.headers["content-type"].startswith("text/plain")
    assert text.text.startswith("flowchart TD\n")
    assert "    evaluate -->|else| improve\n" in text.text
    as_json = stack.call("http_graph_mermaid", path=path, query={"format": "json"})
    assert as_json.status == 200
    ids = {node: node for node in examples.CANONICAL["nodes"]} | {"END": "__end__"}
    assert as_json.json() == {"graph_id": graph_id, "mermaid": text.text, "node_ids": ids}
    bad = stack.call("http_graph_mermaid", path=path, query={"format": "svg"})
    assert bad.status == 422
    assert [loc for loc, _ in bad.problems] == ["query.format"]


def test_a_wrong_method_is_405_in_the_error_shape(stack: ApiStack) -> None:
    reply = stack.call("http_get_graph", method="DELETE")
    assert reply.status == 405
    assert reply.error["type"] == "method_not_allowed"
