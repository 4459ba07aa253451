"""Every LangGraph port of ``examples/langgraph/`` as a durable run on the local stack: each
ends in the state the in-process runner gives (which ``tests/unit/test_supersteps.py`` and
``tests/unit/test_langgraph_patterns.py`` check against LangGraph itself).

The stack loads the ports' toolkit (``hopgraph dev --toolkit``): its routers, the tool that
returns a ``Command`` and the reducer a graph names run in the stack's workers, and the items
a router sends travel in the run's records, not in the hops.

The approval port (``tests/unit/test_approval_port.py`` checks it against LangGraph) runs on
the same stack over the HTTP API: it pauses with its question, takes one answer
(``POST /runs/{id}/resume``, a different second answer refused with 409) and completes.
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
PAUSING = ("approval", "approval_tool", "breakpoint")
"""Ports that wait for a person: answered over HTTP below (test_approval_...), not run to
their end at once."""


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
    names = sorted(p.stem for p in EXAMPLES.glob("*.json") if p.stem not in PAUSING)
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


def test_approval_pauses_over_http_and_is_answered_exactly_once(stack: StackProcess) -> None:
    # Given LangGraph's approval port (tests/unit/test_approval_port.py) created over HTTP
    doc = json.loads((EXAMPLES / "approval.json").read_text())
    with httpx.Client(base_url=stack.api, timeout=10.0) as client:
        created = client.post("/graphs", json=doc)
        assert created.status_code in (200, 201), created.text
        started = client.post("/runs", json={"graph_id": created.json()["graph_id"], "input": {}})
        assert started.status_code in (200, 201, 202), started.text
        run_id = started.json()["run_id"]
        # When it reaches its question, it is paused with the question pending
        paused = _ended(client, run_id)
        assert paused["status"] == "paused", paused
        (question,) = paused["pending"]
        assert (question["task"], question["key"], question["schema"]) == (
            "human_approval", "approved", {"type": "boolean"})  # fmt: skip
        assert question["prompt"] == "Do you approve the following output?"
        listed = client.get("/runs", params={"status": "paused"}).raise_for_status().json()
        assert run_id in [r["run_id"] for r in listed["items"]]
        # Then a value its schema refuses is 422, and the run still waits
        refused = client.post(f"/runs/{run_id}/resume", json={"value": "approve"})
        assert refused.status_code == 422, refused.text
        # And the answer is taken once: another answer is 409 (the same one sent again is
        # answered the same only while the run has not gone on: tests/unit/test_approval_port.py)
        answered = client.post(f"/runs/{run_id}/resume", json={"value": True})
        assert answered.status_code == 200, answered.text
        assert answered.json()["status"] in ("running", "completed"), answered.text
        other = client.post(f"/runs/{run_id}/resume", json={"value": False})
        assert other.status_code == 409, other.text
        # And the run goes on to the approved path, as LangGraph's Command(resume=True) does
        run = _ended(client, run_id, waiting=("running", "paused"))
        assert (run["status"], run["state"]) == ("completed", {
            "llm_output": "This is the generated output.", "approved": True,
            "decision": "approved"})  # fmt: skip
        late = client.post(f"/runs/{run_id}/resume", json={"value": False})
        assert late.status_code == 409, late.text


def test_a_rejected_tool_question_and_a_breakpoint_go_on_over_http(stack: StackProcess) -> None:
    with httpx.Client(base_url=stack.api, timeout=10.0) as client:
        run_ids = {}
        for name in ("approval_tool", "breakpoint"):
            doc = json.loads((EXAMPLES / f"{name}.json").read_text())
            graph_id = client.post("/graphs", json=doc).raise_for_status().json()["graph_id"]
            started = client.post("/runs", json={"graph_id": graph_id, "input": {}})
            run_ids[name] = started.raise_for_status().json()["run_id"]
        # Given the tool that asked, rejected: the run takes the other path
        asked = _ended(client, run_ids["approval_tool"])
        assert [q["task"] for q in asked["pending"]] == ["human_approval"], asked
        client.post(f"/runs/{asked['run_id']}/resume", json={"value": False}).raise_for_status()
        rejected = _ended(client, asked["run_id"], waiting=("running", "paused"))
        assert (rejected["status"], rejected["state"]["decision"]) == ("completed", "rejected")
        # And the breakpoint before step_3, resumed with no body (LangGraph's invoke(None))
        stopped = _ended(client, run_ids["breakpoint"])
        assert [(q["task"], q["kind"]) for q in stopped["pending"]] == [("step_3", "before")]
        assert stopped["state"] == {"trail": ["step_1", "step_2"]}
        client.post(f"/runs/{stopped['run_id']}/resume").raise_for_status()
        done = _ended(client, stopped["run_id"], waiting=("running", "paused"))
        assert done["status"] == "completed"
        assert done["state"] == {"trail": ["step_1", "step_2", "step_3"]}


def _ended(
    client: httpx.Client, run_id: str, waiting: tuple[str, ...] = ("running",)
) -> dict[str, Any]:
    """The run once its status is none of ``waiting`` (a paused run is one that ended here,
    unless ``waiting`` names it)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        run: dict[str, Any] = client.get(f"/runs/{run_id}").raise_for_status().json()
        if run["status"] not in waiting:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still running after {DEADLINE:.0f} s: {run}")
        time.sleep(0.2)
