"""Every LangGraph port of ``examples/langgraph/`` as a durable run on the local stack: each
ends in the state the in-process runner gives (which ``tests/unit/test_supersteps.py`` and
``tests/unit/test_langgraph_patterns.py`` check against LangGraph itself).

The stack loads the ports' toolkit (``hopgraph dev --toolkit``): its routers, the tool that
returns a ``Command`` and the reducer a graph names run in the stack's workers, and the items
a router sends travel in the run's records, not in the hops.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.runner import InProcessRunner
from engine.toolkits.basics import toolkit as basics
from engine.tools import Toolkit
from engine.validation import build_graph
from examples.langgraph.toolkit import toolkit as ports
from functions.models import make_toolkit
from tests.e2e.stack import StackProcess, launch

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "langgraph"
DEADLINE = 60.0  # seconds for every run of every port to end, with a wide margin
TOOLKITS = ("engine.toolkits.basics", "examples.langgraph.toolkit")
INPUTS: dict[str, list[dict[str, Any]]] = {
    "fanout_reducer": [{"aggregate": []}],
    "join_unequal": [{"aggregate": []}],
    "map_reduce": [{"subjects": ["cats", "dogs", "lions"]}, {"subjects": []}],
    "router_branching": [{"which": "bc"}, {"which": "cd"}],
    "orchestrator_worker": [{"topic": "tides"}],
    "send_order": [{"sends": [["y", "one"], ["x", "two"], ["y", "three"]]}],
    "command_goto": [{"pick": "a"}, {"pick": "b"}],
    "custom_reducer": [{}],
    "deferred": [{"route": ["b", "c"]}, {"route": ["b"]}, {"route": ["c"]}],
    "react_agent": [{"messages": ["what is the weather in sf, then in nyc"]}],
    "subgraph_shared_child": [{"foo": "x"}],
    "subgraph_shared": [{"foo": "foo"}],
    "subgraph_mapped_child": [{"bar": "x"}],
    "subgraph_mapped": [{"foo": "foo"}],
    "subgraph_joke": [{"subject": "cats"}],
    "subgraph_send": [{"subjects": ["cats", "dogs", "owls"]}, {"subjects": []}],
    "subgraph_map": [{"subjects": ["cats", "dogs", "owls"]}],
    "time_travel": [{}],
    "retry_flaky": [{}],
    "error_route": [{}],
}
CHILDREN = ("subgraph_shared_child", "subgraph_mapped_child", "subgraph_joke")
"""Graphs that subgraph nodes name: created before the graphs that name them."""


@pytest.fixture(scope="module")
def stack() -> Iterator[StackProcess]:
    options: tuple[str, ...] = ()
    for module in TOOLKITS:
        options += ("--toolkit", module)
    started = launch("sqs", options=options)
    try:
        yield started
    finally:
        started.kill()


def test_every_port_ends_on_the_local_stack_as_in_process(stack: StackProcess) -> None:
    # Given every port of examples/langgraph/ (each has inputs here)
    names = sorted(p.stem for p in EXAMPLES.glob("*.json"))
    assert names == sorted(INPUTS)
    names = [*CHILDREN, *(n for n in names if n not in CHILDREN)]
    tools = Toolkit("ports")
    tools.include(basics)
    tools.include(ports)
    tools.include(make_toolkit(tools))  # the model nodes' tools, as the stack loads them
    docs = {name: json.loads((EXAMPLES / f"{name}.json").read_text()) for name in names}
    named = {docs[c]["name"]: build_graph(docs[c], toolkit=tools) for c in CHILDREN}
    with httpx.Client(base_url=stack.api, timeout=10.0) as client:
        # When each is created over HTTP and run on every input, all at once
        started: list[tuple[str, dict[str, Any], str]] = []
        for name in names:
            created = client.post("/graphs", json=docs[name])
            assert created.status_code in (200, 201), created.text
            for given in INPUTS[name]:
                reply = client.post("/runs", json={"graph_id": created.json()["graph_id"],
                                                   "input": given})  # fmt: skip
                assert reply.status_code in (200, 201, 202), reply.text
                started.append((name, given, reply.json()["run_id"]))
        # Then each ends as the in-process runner ends it
        for name, given, run_id in started:
            run = _ended(client, run_id)
            expected = InProcessRunner(tools, subgraphs=named).run(
                build_graph(docs[name], tools.names(), toolkit=tools), given
            )
            assert (run["status"], run["state"], run.get("error")) == (
                expected.status, expected.state, expected.error,
            ), (name, given)  # fmt: skip
        # And a child run and its parent name each other
        parent_id = next(r for n, _, r in started if n == "subgraph_shared")
        steps = client.get(f"/runs/{parent_id}/steps").raise_for_status().json()["items"]
        child_id = steps[1]["child_run_id"]
        child = client.get(f"/runs/{child_id}").raise_for_status().json()
        assert child["parent"] == {"run_id": parent_id, "seq": 1, "task": "node_2"}
        assert child["status"] == "completed"


def _ended(client: httpx.Client, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE
    while True:
        run: dict[str, Any] = client.get(f"/runs/{run_id}").raise_for_status().json()
        if run["status"] != "running":
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still running after {DEADLINE:.0f} s: {run}")
        time.sleep(0.2)
