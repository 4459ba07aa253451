"""Subgraphs over the HTTP API: a reference resolves among the caller's own graphs, a child
run belongs to its parent's owner, and each names the other (``parent``, ``child_run_id``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import auth_tokens
from tests.functional.api_harness import ApiStack, api_stack

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "langgraph"


def example(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    return doc


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiStack]:
    with api_stack(monkeypatch) as s:
        yield s


def test_a_child_run_is_its_parents_owners_and_each_names_the_other(stack: ApiStack) -> None:
    # Given Alice's child graph and a parent graph that names it
    alice, bob = auth_tokens.token("alice"), auth_tokens.token("bob")
    child = stack.call("http_create_graph", token=alice, body=example("subgraph_shared_child"))
    assert child.status == 201, child.text
    parent = stack.call("http_create_graph", token=alice, body=example("subgraph_shared"))
    assert parent.status == 201, parent.text
    assert parent.json()["graph"]["nodes"]["node_2"] == {"graph": child.json()["graph_id"]}
    # When Alice runs the parent to its end
    body = {"graph_id": parent.json()["graph_id"], "input": {"foo": "foo"}}
    run_id = stack.call("http_start_run", token=alice, body=body).json()["run_id"]
    stack.drain()
    # Then it ends as LangGraph's, its log names the child, and the child names it back
    run = stack.call("http_get_run", token=alice, path=f"/runs/{run_id}").json()
    assert (run["status"], run["state"]) == ("completed", {"foo": "hi! foobar"})
    steps = stack.call("http_run_steps", token=alice, path=f"/runs/{run_id}/steps").json()
    child_id = steps["items"][1]["child_run_id"]
    assert "child_run_id" not in steps["items"][0]
    got = stack.call("http_get_run", token=alice, path=f"/runs/{child_id}").json()
    assert got["parent"] == {"run_id": run_id, "seq": 1, "task": "node_2"}
    assert got["owner"] == "alice"
    # And to Bob, Alice's child run does not exist
    assert stack.call("http_get_run", token=bob, path=f"/runs/{child_id}").status == 404


def test_a_reference_to_another_owners_graph_is_refused_with_its_location(
    stack: ApiStack,
) -> None:
    alice, bob = auth_tokens.token("alice"), auth_tokens.token("bob")
    child = stack.call("http_create_graph", token=alice, body=example("subgraph_shared_child"))
    doc = example("subgraph_shared")
    doc["nodes"]["node_2"]["graph"] = child.json()["graph_id"]
    refused = stack.call("http_create_graph", token=bob, body=doc)
    assert refused.status == 422
    ((where, says),) = refused.problems
    assert where == "nodes.node_2.graph"
    assert "that you can read" in says
