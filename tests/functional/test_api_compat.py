"""The compatibility routes (``/graph/...``) through the Lambda handler: a client of an
earlier engine creates the code-review graph, runs it, and reads the state and the log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from functions.api import examples
from tests.functional.api_harness import ApiStack, api_stack

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def stack() -> Iterator[ApiStack]:
    # One moto stack for the module: these tests do not depend on what others stored.
    with pytest.MonkeyPatch.context() as monkeypatch, api_stack(monkeypatch) as s:
        yield s


def _sample(name: str, fallback: Any) -> Any:
    """The repo's example file when present (examples/ is another engineer's)."""
    path = EXAMPLES / name
    if not path.exists():
        return fallback
    return json.loads(path.read_text()) if name.endswith(".json") else path.read_text()


@pytest.fixture
def graph_id(stack: ApiStack) -> str:
    doc = _sample("code_review_compat.json", examples.DIALECT1)
    reply = stack.call("http_compat_create_graph", body=doc)
    assert reply.status == 200, reply.text
    return str(reply.json()["graph_id"])


def test_create_answers_the_graph_id(stack: ApiStack) -> None:
    reply = stack.call("http_compat_create_graph")  # dialect 1, as sent by older clients
    assert reply.status == 200
    body = reply.json()
    assert body["graph_id"].startswith("g_")
    assert body["graph"]["entry"] == "extract"
    assert body["graph"]["branches"]["evaluate"]["default"] == "improve"


def test_a_code_review_run_completes_with_its_state_and_log(stack: ApiStack, graph_id: str) -> None:
    # Given a run started the old way, with initial_state
    code = _sample("sample_code.py", examples.SAMPLE_CODE)
    started = stack.call(
        "http_compat_run_graph", body={"graph_id": graph_id, "initial_state": {"code": code}}
    )
    assert started.status == 200
    run_id = started.json()["run_id"]
    assert started.json()["status"] == "running"
    # When the worker side delivers its steps
    assert stack.drain() > 0
    # Then the state route shows the completed review, its final state and the whole log
    reply = stack.call("http_compat_state", path=f"/graph/state/{run_id}")
    assert reply.status == 200
    state = reply.json()
    assert state["run_id"] == run_id and state["status"] == "completed"
    assert state["current_node"] is None and state["error"] is None
    final = state["current_state"]
    assert final["quality_score"] >= 7 or final["iteration"] >= 5
    assert len(final["history"]) == final["iteration"]
    log = state["execution_log"]
    assert len(log) == state["steps"]
    assert [e["seq"] for e in log] == list(range(len(log)))
    first_pass = ["extract", "complexity", "issues", "suggest", "evaluate"]
    assert [e["node"] for e in log[:5]] == first_pass
    assert log[-1]["node"] == "evaluate" and log[-1]["next"] == "END"
    assert all(e["status"] == "ok" for e in log)
    # And the log route shows the same log
    logs = stack.call("http_compat_logs", path=f"/graph/logs/{run_id}")
    assert logs.status == 200
    assert logs.json() == {
        "run_id": run_id,
        "status": "completed",
        "execution_log": log,
        "truncated": False,
        "next": None,
    }
    assert (state["truncated"], state["next"]) == (False, None)


def test_a_run_may_be_started_with_input_instead(stack: ApiStack, graph_id: str) -> None:
    started = stack.call(
        "http_compat_run_graph", body={"graph_id": graph_id, "input": {"code": "x = 1\n"}}
    )
    assert started.status == 200
    run = stack.service.store.get_run(started.json()["run_id"])
    assert run.input == {"code": "x = 1\n"}


def test_initial_state_and_input_together_are_refused(stack: ApiStack, graph_id: str) -> None:
    reply = stack.call(
        "http_compat_run_graph",
        body={"graph_id": graph_id, "initial_state": {"a": 1}, "input": {"a": 2}},
    )
    assert reply.status == 422
    assert reply.error["type"] == "invalid_input"


def test_the_log_of_a_failed_run_says_why(stack: ApiStack, graph_id: str) -> None:
    # Given a run whose code does not parse
    started = stack.call(
        "http_compat_run_graph", body={"graph_id": graph_id, "initial_state": {"code": "def ("}}
    )
    run_id = started.json()["run_id"]
    stack.drain()
    # Then the state shows the failure and the log the failed step
    state = stack.call("http_compat_state", path=f"/graph/state/{run_id}").json()
    assert state["status"] == "failed"
    assert "does not parse" in state["error"]
    assert state["execution_log"][-1]["status"] == "failed"


@pytest.mark.parametrize("name", ["http_compat_run_graph", "http_compat_state", "http_compat_logs"])
def test_unknown_graphs_and_runs_are_404(stack: ApiStack, name: str) -> None:
    reply = stack.call(name)  # the events name ids this stack never created
    assert reply.status == 404
    assert reply.error["type"] == "not_found"


def test_a_bad_run_request_is_422(stack: ApiStack) -> None:
    reply = stack.call("http_compat_run_graph", body={"initial_state": "code"})
    assert reply.status == 422
    assert sorted(loc for loc, _ in reply.problems) == ["body.graph_id", "body.initial_state"]


def test_the_log_of_a_long_run_with_large_updates_is_capped_with_a_pointer(
    stack: ApiStack, graph_id: str
) -> None:
    # Given a run with 200 committed steps, each updating ~60 KB (12 MB of log in all; each
    # value under the 64 KB above which replies show a pointer instead, engine/blobs.py)
    from dataclasses import replace

    from engine.ports import RunRecord, StepRecord
    from functions.api.routes_compat import LOG_BUDGET_BYTES
    from tests import auth_tokens

    store = stack.service.store
    run_id = "r_long_large"
    header = RunRecord(run_id, graph_id, "running", {}, 500, 1.0, 1.0, node="extract")
    store.create_run(replace(header, owner=auth_tokens.DEFAULT_USER))
    for seq in range(200):
        blob = {"blob": f"{seq:03d}" + "x" * 60_000}
        store.commit_step(
            StepRecord(run_id, seq, "extract", "extract_functions", "ok", blob, blob,
                       "extract", 2.0 + seq, 1.0)
        )  # fmt: skip
    for name, path in [("http_compat_state", "state"), ("http_compat_logs", "logs")]:
        # When the compatibility routes are read
        reply = stack.call(name, path=f"/graph/{path}/{run_id}")
        # Then each answer stays under the budget (far below Lambda's 6 MB), in the same
        # shape, and says where the rest of the log is
        assert reply.status == 200
        assert len(reply.text.encode()) < LOG_BUDGET_BYTES + 200_000
        body = reply.json()
        log = body["execution_log"]
        assert 0 < len(log) < 200
        assert [e["seq"] for e in log] == list(range(len(log)))
        assert body["truncated"] is True
        assert body["next"] == f"/runs/{run_id}/steps?after={log[-1]['seq']}"
    # And the pointer continues the log where it stopped
    after = log[-1]["seq"]
    page = stack.call(
        "http_run_steps", path=f"/runs/{run_id}/steps", query={"after": after, "limit": 2}
    )
    assert [e["seq"] for e in page.json()["items"]] == [after + 1, after + 2]
    # And with the largest page size, each page of /steps is bounded by bytes too (before,
    # `limit=500` answered 30 MB, past Lambda's 6 MB), and the pages read the whole log once
    from functions.api.step_pages import PAGE_BUDGET_BYTES

    seen, next_after, pages = [e["seq"] for e in log], after, 0
    while next_after is not None:
        query = {"after": next_after, "limit": 500}
        reply = stack.call("http_run_steps", path=f"/runs/{run_id}/steps", query=query)
        assert reply.status == 200
        assert len(reply.text.encode()) < PAGE_BUDGET_BYTES + 1_000
        seen += [e["seq"] for e in reply.json()["items"]]
        next_after, pages = reply.json()["next_after"], pages + 1
    assert seen == list(range(200))
    assert pages > 1
