"""Time travel through the Lambda handler (DynamoDB and SQS on moto): a run's history, forks
(and their history and parent), redrives of a failed run, and state edits refused unless
the run is paused."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests import auth_tokens
from tests.functional.api_harness import ApiStack, api_stack

COUNTER = {
    "name": "counter",
    "entry": "inc",
    "max_steps": 3,
    "nodes": {"inc": {"tool": "increment", "settings": {"key": "n"}}},
    "branches": {"inc": {"cases": [{"when": "n >= 5", "to": "END"}], "default": "inc"}},
}
CHAIN = {
    "name": "chain",
    "entry": "a",
    "state": {"notes": {"reducer": "append"}},
    "nodes": {n: {"tool": "record_visit"} for n in "abc"},
    "edges": {"a": "b", "b": "c", "c": "END"},
}


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiStack]:
    with api_stack(monkeypatch) as s:
        yield s


def started(stack: ApiStack, doc: dict[str, Any], given: dict[str, Any]) -> str:
    graph = stack.call("http_create_graph", body=doc)
    assert graph.status == 201, graph.text
    body = {"graph_id": graph.json()["graph_id"], "input": given}
    reply = stack.call("http_start_run", body=body)
    assert reply.status == 202, reply.text
    stack.drain()
    return str(reply.json()["run_id"])


def run_of(stack: ApiStack, run_id: str) -> dict[str, Any]:
    reply = stack.call("http_get_run", path=f"/runs/{run_id}")
    assert reply.status == 200, reply.text
    return reply.json()  # type: ignore[no-any-return]


def fork(stack: ApiStack, run_id: str, body: dict[str, Any], **kw: Any) -> Any:
    return stack.call("http_fork_run", path=f"/runs/{run_id}/fork", body=body, **kw)


def history_of(stack: ApiStack, run_id: str, **query: Any) -> dict[str, Any]:
    reply = stack.call("http_run_history", path=f"/runs/{run_id}/history", query=query)
    assert reply.status == 200, reply.text
    return reply.json()  # type: ignore[no-any-return]


def test_history_lists_checkpoints_and_states_only_when_asked(stack: ApiStack) -> None:
    run_id = started(stack, CHAIN, {})

    listed = history_of(stack, run_id)
    paged = history_of(stack, run_id, limit=2)
    with_states = history_of(stack, run_id, states="true")

    assert [(i["seq"], i["node"], i["next"]) for i in listed["items"]] == [
        (0, "a", "b"), (1, "b", "c"), (2, "c", "END")
    ]  # fmt: skip
    assert all("state" not in i or i["state"] is None for i in listed["items"])
    assert listed["parent"] is None and listed["next_after"] is None
    assert [i["seq"] for i in paged["items"]] == [0, 1] and paged["next_after"] == 1
    assert [i["state"]["trail"] for i in with_states["items"]] == [["a"], ["a", "b"],
                                                                    ["a", "b", "c"]]  # fmt: skip


def test_a_fork_goes_on_from_its_superstep_and_names_its_parent(stack: ApiStack) -> None:
    # Given a completed chain
    parent = started(stack, CHAIN, {})

    # When it is forked after a, with an update (notes through their append reducer)
    update = {"trail": ["edited"], "notes": ["n1"]}
    reply = fork(stack, parent, {"from_seq": 0, "update": update})
    assert reply.status == 202, reply.text
    forked = reply.json()["run_id"]
    assert reply.headers["location"] == f"/runs/{forked}"
    stack.drain()

    # Then it ran b and c on the edited state, and says where it came from
    body = run_of(stack, forked)
    assert body["status"] == "completed"
    assert body["state"] == {"trail": ["edited", "b", "c"], "notes": ["n1"]}
    assert body["parent"] == {"run_id": parent, "seq": 0}
    listed = history_of(stack, forked)
    assert listed["parent"] == {"run_id": parent, "seq": 0}
    assert [(i["seq"], i["node"], i["source"]) for i in listed["items"]] == [
        (0, "a", "fork"), (1, "b", None), (2, "c", None)
    ]  # fmt: skip
    steps = stack.call("http_run_steps", path=f"/runs/{forked}/steps").json()["items"]
    assert steps[0]["source"] == "fork" and "source" not in steps[1]


def test_a_fork_of_a_fork_and_a_repeated_key(stack: ApiStack) -> None:
    parent = started(stack, CHAIN, {})
    child = fork(stack, parent, {"from_seq": 0, "idempotency_key": "k"}).json()["run_id"]
    again = fork(stack, parent, {"from_seq": 0, "idempotency_key": "k"})
    assert again.status == 200 and again.json()["run_id"] == child
    stack.drain()

    again_b = {"from_seq": 1, "update": {"notes": ["x"]}, "as_node": "b"}
    grandchild = fork(stack, child, again_b)
    assert grandchild.status == 202, grandchild.text
    stack.drain()

    body = run_of(stack, grandchild.json()["run_id"])
    assert body["parent"] == {"run_id": child, "seq": 1}
    assert body["state"] == {"trail": ["a", "b", "c"], "notes": ["x"]}


def test_a_fork_of_another_owners_run_is_404_and_a_bad_request_422(stack: ApiStack) -> None:
    parent = started(stack, CHAIN, {})

    other = fork(stack, parent, {"from_seq": 0}, token=auth_tokens.token("mallory"))
    missing = fork(stack, parent, {"from_seq": 9})
    nowhere = fork(stack, parent, {"from_seq": 0, "update": {"x": 1}, "as_node": "zz"})
    negative = fork(stack, parent, {"from_seq": -1})

    assert other.status == 404 and missing.status == 404
    assert nowhere.status == 422 and negative.status == 422


def test_a_run_stopped_by_its_step_limit_is_redriven_once(stack: ApiStack) -> None:
    # Given a run its step limit stopped
    run_id = started(stack, COUNTER, {"n": 0})
    assert run_of(stack, run_id)["status"] == "failed"
    path = f"/runs/{run_id}/redrive"

    # When it is redriven without a higher limit, then with one
    refused = stack.call("http_redrive_run", path=path)
    accepted = stack.call("http_redrive_run", path=path, body={"max_steps": 20})
    twice = stack.call("http_redrive_run", path=path, body={"max_steps": 20})
    stack.drain()

    # Then only the second went on, and the run completed; the failure stays in the log
    assert refused.status == 422 and "max_steps" in refused.error["message"]
    assert accepted.status == 200 and accepted.json()["status"] == "running"
    assert twice.status == 409
    body = run_of(stack, run_id)
    assert (body["status"], body["state"]["n"], body["max_steps"]) == ("completed", 5, 20)
    listed = history_of(stack, run_id)["items"]
    assert [i["source"] for i in listed].count("redrive") == 1
    assert listed[2]["run_status"] == "failed" and "step limit" in listed[2]["error"]


@pytest.mark.parametrize("status", ["running", "completed"])
def test_redrive_and_state_edits_are_409_unless_the_run_allows_them(
    stack: ApiStack, status: str
) -> None:
    graph = stack.call("http_create_graph", body=CHAIN).json()["graph_id"]
    run_id = stack.call("http_start_run", body={"graph_id": graph, "input": {}}).json()["run_id"]
    if status == "completed":
        stack.drain()

    redrive = stack.call("http_redrive_run", path=f"/runs/{run_id}/redrive")
    edit = stack.call("http_edit_state", path=f"/runs/{run_id}/state",
                      body={"update": {"x": 1}})  # fmt: skip

    assert (redrive.status, redrive.error["type"]) == (409, "conflict")
    assert (edit.status, edit.error["type"]) == (409, "conflict")
    assert "only a paused run" in edit.error["message"]


def test_another_users_run_does_not_exist_for_time_travel(stack: ApiStack) -> None:
    run_id = started(stack, CHAIN, {})
    mallory = auth_tokens.token("mallory")
    calls = [
        ("http_run_history", f"/runs/{run_id}/history", None),
        ("http_fork_run", f"/runs/{run_id}/fork", {"from_seq": 0}),
        ("http_redrive_run", f"/runs/{run_id}/redrive", None),
        ("http_edit_state", f"/runs/{run_id}/state", {"update": {"x": 1}}),
    ]
    for event, path, body in calls:
        reply = stack.call(event, path=path, token=mallory, **({"body": body} if body else {}))
        assert (reply.status, reply.error["type"]) == (404, "not_found"), event
        assert run_id in reply.error["message"]
