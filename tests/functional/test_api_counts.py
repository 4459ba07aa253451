"""``GET /runs/counts`` through the Lambda handler: the runs list's counts per status, of the
caller's runs (an admin's: everyone's), of one graph if asked, bounded."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests import auth_tokens
from tests.functional.api_harness import ApiStack, api_stack

BROKEN = {
    "name": "broken",
    "entry": "call",
    "nodes": {"call": {"tool": "wait", "settings": {"ms": -1}}},
    "edges": {"call": "END"},
}


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiStack]:
    with api_stack(monkeypatch) as s:
        yield s


def counts(stack: ApiStack, token: str, **query: Any) -> Any:
    reply = stack.call("http_get_run", token=token, path="/runs/counts", method="GET",
                       query=query)  # fmt: skip
    assert reply.status == 200, reply.text
    return reply.json()


def start(stack: ApiStack, token: str, graph_id: str, state: dict[str, Any]) -> None:
    body = {"graph_id": graph_id, "input": state}
    assert stack.call("http_start_run", token=token, body=body).status == 202


def test_runs_are_counted_by_status_for_the_caller_and_the_graph(stack: ApiStack) -> None:
    # Given alice's two completed runs of the code-review graph and bob's failed run of another
    alice, bob = auth_tokens.token("alice"), auth_tokens.token("bob")
    admin = auth_tokens.token("root", admin=True)
    review = stack.call("http_create_graph", token=alice).json()["graph_id"]
    for _ in range(2):
        start(stack, alice, review, {"code": "x = 1\n"})
    broken = stack.call("http_create_graph", token=bob, body=BROKEN).json()["graph_id"]
    start(stack, bob, broken, {})
    stack.drain()
    # When each asks for the counts, Then each sees their own runs' (an admin everyone's)
    zero = {"running": 0, "paused": 0, "completed": 0, "failed": 0, "cancelled": 0}
    assert counts(stack, alice) == {"counts": {**zero, "completed": 2}, "exact": True}
    assert counts(stack, bob) == {"counts": {**zero, "failed": 1}, "exact": True}
    assert counts(stack, admin)["counts"] == {**zero, "completed": 2, "failed": 1}
    # And of one graph only, when the list is filtered by it
    assert counts(stack, admin, graph_id=broken)["counts"] == {**zero, "failed": 1}
    # And bounded: counting stops at `up_to` and says the counts are not exact
    assert counts(stack, admin, up_to=1)["exact"] is False


def test_counts_refuse_a_bound_out_of_range(stack: ApiStack) -> None:
    reply = stack.call("http_get_run", path="/runs/counts", method="GET", query={"up_to": 0})
    assert reply.status == 422
