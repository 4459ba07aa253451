"""Parallel graphs through the deployment's composition: created and started over the HTTP
handler, driven by the real worker handler on moto's step queue, read back over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.runner import InProcessRunner
from engine.toolkits.basics import toolkit as basics
from engine.validation import build_graph
from tests.functional.api_harness import ApiStack, api_stack

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiStack]:
    with api_stack(monkeypatch) as s:
        yield s


def run_over_http(stack: ApiStack, doc: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    created = stack.call("http_create_graph", body=doc)
    assert created.status == 201, created.text
    graph_id = created.json()["graph_id"]
    started = stack.call("http_start_run", body={"graph_id": graph_id, "input": given})
    assert started.status == 202, started.text
    stack.drain()
    run_id = started.json()["run_id"]
    run = stack.call("http_get_run", path=f"/runs/{run_id}")
    assert run.status == 200, run.text
    body: dict[str, Any] = run.json()
    return body


@pytest.mark.parametrize(
    ("example", "given"),
    [
        ("parallel_research.json", {"docs": ["a", "b", "c"]}),
        ("langgraph/map_reduce.json", {"subjects": ["cats", "dogs"]}),
        ("langgraph/join_unequal.json", {"aggregate": []}),
    ],
)
def test_a_parallel_graph_ends_over_the_api_as_in_process(
    stack: ApiStack, example: str, given: dict[str, Any]
) -> None:
    # Given a graph with a fan-out, a map or a join
    doc = json.loads((EXAMPLES / example).read_text())
    # When it is created and run over the API, and the worker drains the step queue
    run = run_over_http(stack, doc, given)
    # Then it ends as the in-process runner ends it
    expected = InProcessRunner(basics).run(build_graph(doc, basics.names()), given)
    assert (run["status"], run["state"], run["steps"]) == (
        expected.status, expected.state, expected.steps,
    )  # fmt: skip


def test_the_steps_of_a_parallel_run_name_each_task(stack: ApiStack) -> None:
    doc = json.loads((EXAMPLES / "parallel_research.json").read_text())
    run = run_over_http(stack, doc, {"docs": ["a", "b"]})
    steps = stack.call("http_run_steps", path=f"/runs/{run['run_id']}/steps").json()
    entries = steps["items"] if "items" in steps else steps["steps"]
    assert [e["seq"] for e in entries] == [0, 1, 2, 3]
    superstep = entries[1]
    assert [t["task"] for t in superstep["tasks"]] == ["grade[0]", "grade[1]", "search"]
    assert superstep["next"] == ["read"]
    assert superstep["updates"]["notes"][-3:] == ["search", "graded a", "graded b"]  # merge order
