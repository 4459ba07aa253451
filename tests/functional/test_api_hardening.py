"""The HTTP API's door: the JSON rule on every body, strict ``max_steps``, idempotency
conflicts, and graphs too large for one DynamoDB item; through the Lambda handler on moto."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from engine.json_rules import MAX_DEPTH
from functions.api import examples
from tests.functional.api_harness import ApiStack, api_stack


@pytest.fixture(scope="module")
def stack() -> Iterator[ApiStack]:
    # One moto stack for the module: each test makes its own graph and runs.
    with pytest.MonkeyPatch.context() as monkeypatch, api_stack(monkeypatch) as s:
        yield s


@pytest.fixture
def graph_id(stack: ApiStack) -> str:
    reply = stack.call("http_create_graph")  # the code-review graph
    assert reply.status == 201, reply.text
    return str(reply.json()["graph_id"])


def nested(depth: int) -> str:
    """JSON text of ``depth`` arrays, one inside the other."""
    return "[" * depth + "]" * depth


# The run-starting and graph-creating routes, each with a body template whose ``@`` is where
# a client value goes (JSON text, so nesting and escapes are sent exactly as written).
ENTRY_POINTS = {
    "runs": ("http_start_run", '{"graph_id": "%(graph)s", "input": {"v": @}}', "body.input.v"),
    "compat-run": (
        "http_compat_run_graph",
        '{"graph_id": "%(graph)s", "initial_state": {"v": @}}',
        "body.initial_state.v",
    ),
    "graphs": ("http_create_graph", '{"name": "g", "nodes": {"a": {"tool": "x", "v": @}}}',
               "body.nodes.a.v"),
    "compat-create": ("http_compat_create_graph", '{"name": "g", "nodes": {"a": @}}',
                      "body.nodes.a"),
}  # fmt: skip


def send(stack: ApiStack, entry: str, value: str, graph_id: str) -> Any:
    event, template, _where = ENTRY_POINTS[entry]
    body = template.replace("@", value) % {"graph": graph_id}
    return stack.call(event, raw_body=body)


# -- the JSON rule ------------------------------------------------------------------------
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_value_nested_deeper_than_the_limit_is_422_with_its_location(
    stack: ApiStack, graph_id: str, entry: str
) -> None:
    # When a client value nests 256 levels deep
    reply = send(stack, entry, nested(256), graph_id)
    # Then it is refused at the door, saying where and why, and nothing was started
    assert reply.status == 422, reply.text
    assert reply.error["type"] == "invalid_input"
    [(location, message)] = reply.problems
    assert location.startswith(ENTRY_POINTS[entry][2])
    assert f"nested deeper than {MAX_DEPTH} levels" in message
    assert stack.queued() == []


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_body_nested_10000_deep_is_422_not_a_parser_failure(
    stack: ApiStack, graph_id: str, entry: str
) -> None:
    reply = send(stack, entry, nested(10_000), graph_id)
    assert reply.status == 422, reply.text
    assert reply.error["type"] == "invalid_input"
    assert "nested deeper than" in reply.error["message"]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize(
    ("value", "inner"),
    [('"x\\ud800"', ""), ('{"\\udc00k": 1}', ".\\udc00k")],
    ids=["string", "key"],
)
def test_a_lone_surrogate_is_422_with_its_location(
    stack: ApiStack, graph_id: str, entry: str, value: str, inner: str
) -> None:
    reply = send(stack, entry, value, graph_id)
    assert reply.status == 422, reply.text
    assert reply.problems[0][0] == ENTRY_POINTS[entry][2] + inner
    assert "not valid Unicode" in reply.problems[0][1]
    assert stack.queued() == []


def test_a_lone_surrogate_in_a_graph_name_is_422(stack: ApiStack) -> None:
    doc = json.dumps(examples.CANONICAL | {"name": "review"}).replace("review", "re\\ud800view")
    reply = stack.call("http_create_graph", raw_body=doc)
    assert reply.status == 422
    assert reply.problems[0][0] == "body.name"


def test_a_value_at_the_limit_is_accepted_and_reads_back(stack: ApiStack, graph_id: str) -> None:
    # Given a body nesting exactly as deep as the rule allows (the body and the input object
    # are two of its levels)
    value = nested(MAX_DEPTH - 2)
    reply = stack.call(
        "http_start_run", raw_body=f'{{"graph_id": "{graph_id}", "input": {{"v": {value}}}}}'
    )
    assert reply.status == 202, reply.text
    # Then the run reads back with it
    run = stack.call("http_get_run", path=f"/runs/{reply.json()['run_id']}")
    assert run.status == 200
    assert run.json()["input"]["v"] == json.loads(value)
    stack.drain()  # the stack is shared by the module: leave no hop behind


# -- strict max_steps ---------------------------------------------------------------------
@pytest.mark.parametrize("value", ["true", '"3"', "3.0"])
@pytest.mark.parametrize(
    ("event", "template", "location"),
    [
        ("http_start_run", '{"graph_id": "%s", "input": {}, "max_steps": @}', "body.max_steps"),
        ("http_compat_run_graph", '{"graph_id": "%s", "max_steps": @}', "body.max_steps"),
    ],
    ids=["runs", "compat-run"],
)
def test_max_steps_that_is_not_a_json_integer_is_422(
    stack: ApiStack, graph_id: str, value: str, event: str, template: str, location: str
) -> None:
    reply = stack.call(event, raw_body=(template % graph_id).replace("@", value))
    assert reply.status == 422, reply.text
    assert [loc for loc, _ in reply.problems] == [location]
    assert stack.queued() == []


@pytest.mark.parametrize("value", [True, "3", 3.0])
def test_a_graph_whose_max_steps_is_not_an_integer_is_422(stack: ApiStack, value: Any) -> None:
    reply = stack.call("http_create_graph", body=examples.CANONICAL | {"max_steps": value})
    assert reply.status == 422
    assert reply.error["type"] == "graph_invalid"
    assert [loc for loc, _ in reply.problems] == ["max_steps"]


# -- idempotency --------------------------------------------------------------------------
def test_an_idempotency_key_reused_for_another_request_is_409(
    stack: ApiStack, graph_id: str
) -> None:
    # Given a run started with a key
    first = {"graph_id": graph_id, "idempotency_key": "pr-9", "input": {"code": "x = 1\n"}}
    started = stack.call("http_start_run", body=first)
    assert started.status == 202
    run_id = started.json()["run_id"]
    stack.drain()
    # When the same body comes again, it is the same run (200)
    again = stack.call("http_start_run", body=dict(reversed(first.items())))
    assert (again.status, again.json()["run_id"]) == (200, run_id)
    # But another input, step limit, or both, under the key is refused, naming the run and
    # what differs; nothing new is queued
    cases = [
        ({"input": {"code": "y = 2\n"}}, ["input"]),
        ({"max_steps": 7}, ["max_steps"]),
        ({"input": {}, "max_steps": 7}, ["input", "max_steps"]),
    ]
    for change, differs in cases:
        reply = stack.call("http_start_run", body=first | change)
        assert reply.status == 409, reply.text
        assert reply.error["type"] == "idempotency_conflict"
        assert (reply.error["run_id"], reply.error["differs"]) == (run_id, differs)
        assert "pr-9" in reply.error["message"]
        assert reply.headers["location"] == f"/runs/{run_id}"
    assert stack.queued() == []
    # And the compatibility route answers the same way
    compat = stack.call(
        "http_compat_run_graph",
        body={"graph_id": graph_id, "idempotency_key": "pr-9", "initial_state": {}},
    )
    assert compat.status == 409
    assert compat.error["differs"] == ["input"]


# -- one DynamoDB item --------------------------------------------------------------------
@pytest.mark.parametrize(
    "doc",
    [
        examples.CANONICAL | {"name": "n" * 450_000},
        # settings that do not compress: about 800 KB of random base64
        examples.CANONICAL
        | {"nodes": {**examples.CANONICAL["nodes"], "extract": {"tool": "extract_functions",
                     "settings": {"blob": secrets.token_urlsafe(600_000)}}}},
    ],
    ids=["long-name", "large-settings"],
)  # fmt: skip
def test_a_graph_too_large_for_one_item_is_413(stack: ApiStack, doc: dict[str, Any]) -> None:
    listed = len(stack.call("http_list_graphs", query={"limit": 200}).json()["items"])
    # When a graph is created whose stored item would exceed DynamoDB's 400 KB
    reply = stack.call("http_create_graph", body=doc)
    # Then it is refused with 413 and why, not a 500, and nothing was stored
    assert reply.status == 413, reply.text[:300]
    assert reply.error["type"] == "payload_too_large"
    assert "the store's limit of 409600 bytes" in reply.error["message"]
    after = stack.call("http_list_graphs", query={"limit": 200}).json()["items"]
    assert len(after) == listed
