"""Pauses through the deployment's composition on moto: the API's Lambda handler, the step
queue and the worker. A paused run shows its question, is listed by ``status=paused``, and
is answered once by ``POST /runs/{id}/resume`` (the same answer again: the same reply; a
different one, or a run that waits for nothing: 409; a value its schema refuses: 422); the
command line's ``runs resume`` and ``runs show`` do the same."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from infra.cli import main as cli
from tests.functional.api_harness import ApiStack
from tests.functional.test_cli_time_travel import hopgraph
from tests.functional.test_cli_time_travel import stack as cli_stack  # noqa: F401 (fixture)

APPROVAL = {
    "entry": "draft",
    "nodes": {
        "draft": {"tool": "increment", "settings": {"key": "count"}},
        "approve": {
            "interrupt": {"prompt": "Ship it?", "key": "approved", "schema": {"type": "boolean"}}
        },
        "ship": {"tool": "record_visit"},
    },
    "edges": {"draft": "approve", "approve": "ship", "ship": "END"},
}


@pytest.fixture
def stack(cli_stack: ApiStack) -> Iterator[ApiStack]:  # noqa: F811
    yield cli_stack


def paused_run(stack: ApiStack, graph: dict[str, Any] = APPROVAL) -> str:
    created = stack.call("http_create_graph", body=graph)
    assert created.status == 201, created.text
    started = stack.call("http_start_run", body={"graph_id": created.json()["graph_id"]})
    assert started.status == 202, started.text
    stack.drain()
    return str(started.json()["run_id"])


def resume(stack: ApiStack, run_id: str, body: Any) -> Any:
    return stack.call("http_get_run", path=f"/runs/{run_id}/resume", method="POST", body=body)


def test_a_paused_run_shows_its_question_and_is_answered_once(stack: ApiStack) -> None:
    run_id = paused_run(stack)
    run = stack.call("http_get_run", path=f"/runs/{run_id}").json()
    assert run["status"] == "paused"
    (question,) = run["pending"]
    assert (question["task"], question["prompt"], question["key"], question["schema"]) == (
        "approve", "Ship it?", "approved", {"type": "boolean"})  # fmt: skip
    assert question["id"] == "1/interrupt/approve"
    listed = stack.call("http_list_runs", path="/runs", query={"status": "paused"}).json()
    assert [r["run_id"] for r in listed["items"]] == [run_id]
    refused = resume(stack, run_id, {"value": "yes"})
    assert refused.status == 422 and "boolean" in refused.text
    assert resume(stack, run_id, {"value": True}).status == 200
    again = resume(stack, run_id, {"value": True})
    assert (again.status, again.json()["status"]) == (200, "running")
    assert resume(stack, run_id, {"value": False}).status == 409
    stack.drain()
    done = stack.call("http_get_run", path=f"/runs/{run_id}").json()
    assert (done["status"], done["state"]["approved"], done["pending"]) == ("completed", True, [])
    assert resume(stack, run_id, {"value": False}).status == 409


def test_unknown_fields_and_unknown_runs_are_refused(stack: ApiStack) -> None:
    run_id = paused_run(stack)
    assert resume(stack, run_id, {"value": True, "colour": "red"}).status == 422
    assert resume(stack, "r_nope", {"value": True}).status == 404


def test_the_command_line_shows_and_answers_the_question(
    stack: ApiStack, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = paused_run(stack)
    capsys.readouterr()
    assert cli.main(["runs", "show", run_id]) == 0
    shown = capsys.readouterr().out
    assert "waits" in shown and "Ship it? (answer: boolean)" in shown
    assert f"hopgraph runs resume {run_id} --value JSON" in shown
    listed = hopgraph(capsys, "runs", "list", "--status", "paused")
    assert [r["run_id"] for r in listed] == [run_id]
    answered = hopgraph(capsys, "runs", "resume", run_id, "--value", "true")
    assert answered["status"] == "running"
    stack.drain()
    assert hopgraph(capsys, "runs", "show", run_id)["state"]["approved"] is True
    capsys.readouterr()
    assert cli.main(["runs", "resume", run_id, "--value", "false"]) != 0
    assert "answered already, with another value" in capsys.readouterr().err


def test_a_run_started_with_its_own_breakpoint_pauses_there(stack: ApiStack) -> None:
    nodes = {"draft": APPROVAL["nodes"]["draft"], "ship": {"tool": "record_visit"}}
    graph = {"entry": "draft", "nodes": nodes, "edges": {"draft": "ship", "ship": "END"}}
    graph_id = stack.call("http_create_graph", body=graph).json()["graph_id"]
    refused = stack.call("http_start_run", body={"graph_id": graph_id, "interrupt_after": ["x"]})
    assert refused.status == 422 and "no node 'x'" in refused.text
    started = stack.call("http_start_run",
                         body={"graph_id": graph_id, "interrupt_before": ["ship"]})  # fmt: skip
    run_id = started.json()["run_id"]
    stack.drain()  # through the worker on moto: the breakpoint travels in the run's records
    run = stack.call("http_get_run", path=f"/runs/{run_id}").json()
    assert (run["status"], [q["kind"] for q in run["pending"]]) == ("paused", ["before"])
    assert resume(stack, run_id, None).status == 200
    stack.drain()
    assert stack.call("http_get_run", path=f"/runs/{run_id}").json()["status"] == "completed"
