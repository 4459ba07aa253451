"""``POST /graphs?reuse=true`` through the Lambda handler over DynamoDB (moto): a definition
whose canonical content is already stored answers that graph (200) instead of a copy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from functions.api import examples
from tests.functional.api_harness import ApiStack, api_stack


@pytest.fixture
def stack() -> Iterator[ApiStack]:
    # A stack per test: each counts the graphs stored.
    with pytest.MonkeyPatch.context() as monkeypatch, api_stack(monkeypatch) as s:
        yield s


def stored_graph_ids(stack: ApiStack) -> list[str]:
    page = stack.call("http_list_graphs", query={"limit": 200}).json()
    return [g["graph_id"] for g in page["items"]]


def test_the_same_graph_in_two_dialects_is_stored_once(stack: ApiStack) -> None:
    # Given the code-review graph created with reuse, in dialect 1
    dialect1 = examples.GRAPH_EXAMPLES["dialect1"]["value"]
    first = stack.call("http_create_graph", query={"reuse": "true"}, body=dialect1)
    assert first.status == 201, first.text
    # When the same graph is sent again with reuse, in dialect 3
    dialect3 = examples.GRAPH_EXAMPLES["dialect3"]["value"]
    again = stack.call("http_create_graph", query={"reuse": "true"}, body=dialect3)
    # Then the stored graph is answered with 200, and it is the only one
    assert again.status == 200, again.text
    assert again.json() == first.json()
    assert stored_graph_ids(stack) == [first.json()["graph_id"]]


def test_without_reuse_every_create_is_a_new_graph(stack: ApiStack) -> None:
    # Given a graph created with reuse
    doc = examples.GRAPH_EXAMPLES["canonical"]["value"]
    reused = stack.call("http_create_graph", query={"reuse": "true"}, body=doc).json()
    # When the same definition is created without it
    copy = stack.call("http_create_graph", body=doc)
    # Then a copy is made, as before
    assert copy.status == 201, copy.text
    assert copy.json()["graph_id"] != reused["graph_id"]
    assert len(stored_graph_ids(stack)) == 2


def test_a_bad_graph_is_refused_with_reuse_too(stack: ApiStack) -> None:
    # Given a graph whose entry is not one of its nodes
    bad = {"entry": "nowhere", "nodes": {"a": {"tool": "extract_functions"}}}
    # When it is created with reuse
    reply = stack.call("http_create_graph", query={"reuse": "true"}, body=bad)
    # Then its problems are listed, as without reuse, and nothing is stored
    assert reply.status == 422, reply.text
    assert any("nowhere" in message for _, message in reply.problems), reply.problems
    assert stored_graph_ids(stack) == []
