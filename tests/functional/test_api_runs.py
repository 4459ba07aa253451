"""``/runs`` through the Lambda handler: start (idempotently), read, list, page the log,
cancel; and the errors: unknown graph or run, bad input, oversized input, final runs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from engine.runner import InProcessRunner
from engine.validation import build_graph
from functions.api import examples
from tests.functional.api_harness import ApiStack, api_stack

STATE_LIMIT = 20_000


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiStack]:
    with api_stack(monkeypatch, state_limit_bytes=str(STATE_LIMIT)) as s:
        yield s


@pytest.fixture
def graph_id(stack: ApiStack) -> str:
    reply = stack.call("http_create_graph")  # the code-review graph
    assert reply.status == 201
    return str(reply.json()["graph_id"])


def start(stack: ApiStack, graph_id: str, **fields: Any) -> dict[str, Any]:
    body = {"graph_id": graph_id, "input": {"code": examples.SAMPLE_CODE}, **fields}
    reply = stack.call("http_start_run", body=body)
    assert reply.status in (200, 202), reply.text
    return reply.json()  # type: ignore[no-any-return]


# -- start ----------------------------------------------------------------------------------
def test_start_answers_202_with_the_run_and_its_location(stack: ApiStack, graph_id: str) -> None:
    # When a run is started
    reply = stack.call(
        "http_start_run", body={"graph_id": graph_id, "input": {"code": examples.SAMPLE_CODE}}
    )
    # Then it is accepted, running, and its URL is in Location
    assert reply.status == 202
    body = reply.json()
    assert body["status"] == "running" and body["created"] is True
    assert body["graph_id"] == graph_id
    assert reply.headers["location"] == f"/runs/{body['run_id']}"
    # And its first hop is queued
    assert [(hop.run_id, hop.seq, hop.node) for hop in stack.queued()] == [
        (body["run_id"], 0, "extract")
    ]


def test_the_same_idempotency_key_returns_the_same_run_with_200(
    stack: ApiStack, graph_id: str
) -> None:
    # Given a run started with a key
    first = stack.call(
        "http_start_run", body={"graph_id": graph_id, "idempotency_key": "pr-7", "input": {}}
    )
    assert first.status == 202
    stack.drain()
    # When it is started again with the same key
    again = stack.call(
        "http_start_run", body={"graph_id": graph_id, "idempotency_key": "pr-7", "input": {}}
    )
    # Then the same run comes back, with 200, and nothing new is queued
    assert again.status == 200
    assert again.json()["run_id"] == first.json()["run_id"]
    assert again.json()["created"] is False
    assert again.headers["location"] == first.headers["location"]
    assert stack.queued() == []


def test_starting_an_unknown_graph_is_404(stack: ApiStack) -> None:
    reply = stack.call("http_start_run")  # names a graph this stack never created
    assert reply.status == 404
    assert reply.error["type"] == "not_found"
    assert examples.EXAMPLE_GRAPH_ID in reply.error["message"]


def test_an_input_over_the_state_limit_is_413(stack: ApiStack, graph_id: str) -> None:
    reply = stack.call(
        "http_start_run", body={"graph_id": graph_id, "input": {"code": "#" * STATE_LIMIT}}
    )
    assert reply.status == 413
    assert reply.error["type"] == "payload_too_large"
    assert f"limit of {STATE_LIMIT} bytes" in reply.error["message"]
    assert stack.queued() == []


@pytest.mark.parametrize(
    ("fields", "locations"),
    [
        ({"input": [1, 2]}, ["body.input"]),
        ({"max_steps": 0}, ["body.max_steps"]),
        ({"max_steps": 10_001, "idempotency_key": ""}, ["body.idempotency_key", "body.max_steps"]),
        ({"inputs": {}}, ["body.inputs"]),
        ({"graph_id": None}, ["body.graph_id"]),
    ],
    ids=["input-not-object", "max-steps-zero", "two-problems", "unknown-field", "no-graph"],
)
def test_a_bad_start_request_is_422_listing_each_field(
    stack: ApiStack, graph_id: str, fields: dict[str, Any], locations: list[str]
) -> None:
    body = {"graph_id": graph_id, **fields}
    reply = stack.call("http_start_run", body=body)
    assert reply.status == 422
    assert reply.error["type"] == "request_invalid"
    assert sorted(loc for loc, _ in reply.problems) == locations


def test_a_start_without_a_body_is_422(stack: ApiStack) -> None:
    from tests.functional.api_harness import http_event, invoke, through_authorizer

    event = http_event("http_start_run")
    del event["body"]
    assert through_authorizer(event) is None
    reply = invoke(event)
    assert reply.status == 422
    assert reply.problems[0][0] == "body"


# -- read -----------------------------------------------------------------------------------
def test_a_run_reads_back_running_then_completed(stack: ApiStack, graph_id: str) -> None:
    # Given a started run
    run_id = start(stack, graph_id)["run_id"]
    path = f"/runs/{run_id}"
    # Then before any step it is running at the entry node with its input as state
    before = stack.call("http_get_run", path=path).json()
    assert before["status"] == "running"
    assert before["current_node"] == "extract"
    assert before["steps"] == 0
    assert before["state"] == before["input"] == {"code": examples.SAMPLE_CODE}
    # When its steps are delivered
    stack.drain()
    # Then it completed with the same final state as the in-process reference runner
    after = stack.call("http_get_run", path=path).json()
    reference = InProcessRunner(stack.service.tools).run(
        build_graph(examples.CANONICAL), {"code": examples.SAMPLE_CODE}
    )
    assert after["status"] == "completed"
    assert after["current_node"] is None
    assert after["error"] is None
    assert after["steps"] == reference.steps
    assert after["state"] == reference.state
    assert after["created_at"] <= after["updated_at"]
    assert after["created_at"].endswith("Z") and "T" in after["created_at"]


def test_an_unknown_run_is_404_on_every_run_route(stack: ApiStack) -> None:
    for name in ("http_get_run", "http_run_steps", "http_cancel_run"):
        reply = stack.call(name)  # the events name a run this stack never started
        assert reply.status == 404, name
        assert reply.error == {
            "type": "not_found",
            "message": f"run '{examples.EXAMPLE_RUN_ID}' not found",
        }


def test_the_log_pages_by_seq(stack: ApiStack, graph_id: str) -> None:
    # Given a completed run
    run_id = start(stack, graph_id)["run_id"]
    stack.drain()
    path = f"/runs/{run_id}/steps"
    # When its log is read two steps at a time
    entries: list[dict[str, Any]] = []
    after = -1
    pages = 0
    while after is not None:
        page = stack.call("http_run_steps", path=path, query={"after": after, "limit": 2}).json()
        entries += page["items"]
        after = page["next_after"]
        pages += 1
    # Then every step comes once, in order, as the log shows it
    whole = stack.call("http_run_steps", path=path, query={"limit": 500}).json()
    assert whole["next_after"] is None
    assert entries == whole["items"]
    assert [e["seq"] for e in entries] == list(range(len(entries)))
    assert pages >= len(entries) // 2
    assert [e["node"] for e in entries[:5]] == [
        "extract", "complexity", "issues", "suggest", "evaluate",
    ]  # fmt: skip
    assert entries[-1]["run_status"] == "completed" and entries[-1]["next"] == "END"
    assert set(entries[0]) == {
        "seq", "node", "tool", "status", "updates", "next", "started_at", "duration_ms",
        "error", "attempt", "run_status",
    }  # fmt: skip
    assert entries[0]["started_at"].endswith("Z")


def test_list_runs_filters_by_graph_and_status(stack: ApiStack, graph_id: str) -> None:
    # Given two runs of the code-review graph (one completed) and one of another graph
    other = stack.call("http_create_graph", body=examples.DIALECT2).json()["graph_id"]
    done = start(stack, graph_id)["run_id"]
    stack.drain()
    running = start(stack, graph_id)["run_id"]
    elsewhere = start(stack, other)["run_id"]

    def listed(**query: Any) -> list[str]:
        reply = stack.call("http_list_runs", query=query)
        assert reply.status == 200, reply.text
        return [r["run_id"] for r in reply.json()["items"]]

    # Then each filter selects exactly its runs
    assert sorted(listed(graph_id=graph_id)) == sorted([done, running])
    assert listed(graph_id=graph_id, status="completed") == [done]
    assert sorted(listed(status="running")) == sorted([running, elsewhere])
    assert sorted(listed()) == sorted([done, running, elsewhere])
    assert listed(graph_id="g_nothing") == []
    bad = stack.call("http_list_runs", query={"status": "finished"})
    assert bad.status == 422
    assert [loc for loc, _ in bad.problems] == ["query.status"]


def test_list_runs_pages_with_a_cursor(stack: ApiStack, graph_id: str) -> None:
    started = {start(stack, graph_id)["run_id"] for _ in range(5)}
    seen: list[str] = []
    cursor: str | None = None
    while True:
        query: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = stack.call("http_list_runs", query=query).json()
        seen += [r["run_id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(started)


def test_a_cursor_the_store_never_gave_is_422(stack: ApiStack) -> None:
    reply = stack.call("http_list_runs", query={"cursor": "not-a-cursor"})
    assert reply.status == 422
    assert reply.error["type"] == "invalid_input"


# -- cancel ---------------------------------------------------------------------------------
def test_cancel_stops_a_running_run_and_a_second_cancel_is_409(
    stack: ApiStack, graph_id: str
) -> None:
    # Given a run that has taken one step
    run_id = start(stack, graph_id)["run_id"]
    assert stack.step_once() == 1
    path = f"/runs/{run_id}/cancel"
    # When it is cancelled
    reply = stack.call("http_cancel_run", path=path)
    # Then it is final, and the log ends with the cancellation
    assert reply.status == 200
    run = reply.json()
    assert run["status"] == "cancelled" and run["error"] == "cancelled by request"
    assert run["current_node"] is None
    stack.drain()  # the queued second hop finds the run final and commits nothing
    log = stack.call("http_run_steps", path=f"/runs/{run_id}/steps").json()["items"]
    assert [(e["seq"], e["status"]) for e in log] == [(0, "ok"), (1, "cancelled")]
    # And cancelling again conflicts
    again = stack.call("http_cancel_run", path=path)
    assert again.status == 409
    assert again.error == {"type": "conflict", "message": f"run {run_id!r} is already cancelled"}


def test_cancelling_a_completed_run_is_409(stack: ApiStack, graph_id: str) -> None:
    run_id = start(stack, graph_id)["run_id"]
    stack.drain()
    reply = stack.call("http_cancel_run", path=f"/runs/{run_id}/cancel")
    assert reply.status == 409
    assert "already completed" in reply.error["message"]
