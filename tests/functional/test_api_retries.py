"""Retries and error routes through the deployment's composition on moto: the API, the step
queue (delays and all) and the worker handler; the log shows every attempt."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.functional.api_harness import ApiStack, api_stack

QUICK = {"initial_interval_s": 0, "jitter": False}


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiStack]:
    with api_stack(monkeypatch) as s:
        yield s


def run(stack: ApiStack, graph: dict[str, Any]) -> str:
    created = stack.call("http_create_graph", body=graph)
    assert created.status == 201, created.text
    started = stack.call("http_start_run", body={"graph_id": created.json()["graph_id"]})
    assert started.status == 202, started.text
    stack.drain()
    return str(started.json()["run_id"])


def test_a_retried_task_commits_once_and_the_log_shows_its_failed_attempts(
    stack: ApiStack,
) -> None:
    # Given a node whose tool fails twice with ConnectionError and a retry policy
    graph = {
        "entry": "call",
        "nodes": {"call": {"tool": "flaky", "retry": QUICK}},
        "edges": {"call": "END"},
    }
    # When a run goes through the step queue and the worker
    run_id = run(stack, graph)
    # Then it completed on its third attempt, as one step
    done = stack.call("http_get_run", path=f"/runs/{run_id}").json()
    assert (done["status"], done["state"], done["steps"]) == ("completed", {"attempts": 3}, 1)
    page = stack.call("http_run_steps", path=f"/runs/{run_id}/steps").json()
    assert [(s["seq"], s["status"], s["attempt"]) for s in page["items"]] == [(0, "ok", 3)]
    # And the log lists the two failed attempts
    assert [(a["seq"], a["task"], a["attempt"], a["error_type"]) for a in page["attempts"]] == [
        (0, "call", 1, "ConnectionError"), (0, "call", 2, "ConnectionError")
    ]  # fmt: skip


def test_an_error_route_takes_over_once_attempts_are_spent(stack: ApiStack) -> None:
    call = {"tool": "flaky", "settings": {"succeed_on": 0},
            "retry": {"max_attempts": 2, **QUICK}, "on_error": "fallback"}  # fmt: skip
    graph = {
        "entry": "call",
        "nodes": {"call": call, "fallback": {"tool": "record_visit"}},
        "edges": {"call": "END", "fallback": "END"},
    }
    run_id = run(stack, graph)
    done = stack.call("http_get_run", path=f"/runs/{run_id}").json()
    assert done["status"] == "completed"
    assert done["state"]["trail"] == ["fallback"]
    assert done["state"]["error"] == {
        "node": "call", "task": "call", "type": "ConnectionError", "attempts": 2,
        "message": "tool 'flaky' failed: ConnectionError: attempt 2 of call failed",
    }  # fmt: skip


def test_a_timeout_that_does_not_fit_in_the_worker_is_refused(stack: ApiStack) -> None:
    graph = {
        "entry": "call",
        "nodes": {"call": {"tool": "flaky", "timeout_s": 600}},
        "edges": {"call": "END"},
    }
    reply = stack.call("http_create_graph", body=graph)
    assert reply.status == 422
    ((where, message),) = reply.problems
    assert where.endswith("nodes.call.timeout_s")
    assert "does not fit in the worker" in message


def test_a_waiting_run_is_running_with_its_wake_time_and_its_hop_held_by_sqs(
    stack: ApiStack,
) -> None:
    # Given a run that waits ten minutes after its first node
    graph = {
        "entry": "call",
        "nodes": {"call": {"tool": "record_visit"}, "pause": {"wait": {"seconds": 600}}},
        "edges": {"call": "pause", "pause": "END"},
    }
    # When its hops are delivered until none is visible
    run_id = run(stack, graph)
    # Then it is running, says when it wakes, and its wait's hop is held in the queue
    reply = stack.call("http_get_run", path=f"/runs/{run_id}").json()
    assert (reply["status"], reply["steps"], reply["current_node"]) == ("running", 1, "pause")
    step = stack.call("http_run_steps", path=f"/runs/{run_id}/steps").json()["items"][0]
    assert reply["wakes_at"] > step["started_at"]  # ISO times of one format sort as text
    attributes = stack.aws.sqs.get_queue_attributes(
        QueueUrl=stack.aws.urls["StepQueue"], AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"
