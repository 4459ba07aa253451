"""``advance``: one step as a pure function, and every way a step can end a run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from engine.graph import END, Graph
from engine.step import COMPLETED, Limits, advance
from engine.superstep import state_size
from engine.tools import MAX_ERROR_CHARS, ToolContext, Toolkit
from engine.validation import build_graph

NOW = 1_700_000_000.0
tools = Toolkit("step-tests")


@tools.tool
def count(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    return {"n": state.get("n", 0) + 1}


@tools.tool
def label(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    return {"label": f"step {ctx.step} of {ctx.run_id}"}


@tools.tool
def nothing(state: Mapping[str, Any], ctx: ToolContext) -> None:
    return None


@tools.tool
def explode(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    raise RuntimeError("disk on fire")


@tools.tool
def grow(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    return {"blob": "x" * 1_000}


@tools.tool
def rant(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    raise ValueError("e" * 500_000)


def graph_of(doc: dict[str, Any]) -> Graph:
    return build_graph(doc, tools.names())


LOOP = graph_of(
    {
        "entry": "count",
        "nodes": {"count": {"tool": "count"}, "label": {"tool": "label"}},
        "edges": {"count": "label"},
        "branches": {
            "label": {
                "cases": [{"when": "n >= 3", "to": "END"}, {"when": "n == 2", "to": "label"}],
                "default": "count",
            }
        },
    }
)


def step(
    graph: Graph,
    node: str,
    state: dict[str, Any],
    seq: int = 0,
    max_steps: int = 100,
    state_limit: int | None = None,
) -> Any:
    ctx = ToolContext("r_1", node, seq, attempt=2)
    return advance(graph, tools, node, state, ctx, Limits(max_steps, state_limit), NOW)


def test_updates_merge_into_the_state_and_the_run_goes_on() -> None:
    # Given a state with a key the tool does not touch
    state = {"n": 0, "keep": "me"}
    # When the node runs
    outcome = step(LOOP, "count", state, seq=4)
    # Then its updates are merged, the edge is followed and nothing ends
    record = outcome.step
    assert record.updates == {"n": 1}
    assert record.state == {"n": 1, "keep": "me"}
    assert state == {"n": 0, "keep": "me"}  # the input is not changed
    assert (record.next_node, outcome.next_node, outcome.end) == ("label", "label", None)
    assert (record.status, record.run_status, record.error) == ("ok", "running", None)
    # And the record says which step it is
    assert (record.run_id, record.seq, record.node, record.tool) == ("r_1", 4, "count", "count")
    assert (record.started_at, record.attempt) == (NOW, 2)
    assert record.duration_ms >= 0


def test_the_tool_sees_its_context() -> None:
    outcome = step(LOOP, "label", {"n": 0}, seq=7)
    assert outcome.step.updates == {"label": "step 7 of r_1"}


@pytest.mark.parametrize(("n", "expected"), [(0, "count"), (1, "count"), (2, "label")])
def test_a_branch_routes_by_its_first_true_case_else_its_default(n: int, expected: str) -> None:
    outcome = step(LOOP, "label", {"n": n})
    assert outcome.next_node == expected
    assert outcome.end is None


def test_routing_to_END_completes_the_run() -> None:
    outcome = step(LOOP, "label", {"n": 3}, seq=9)
    assert outcome.end == COMPLETED
    assert outcome.next_node is None
    assert outcome.step.next_node == END
    assert (outcome.step.status, outcome.step.run_status) == ("ok", "completed")


def test_no_updates_keep_the_state() -> None:
    graph = graph_of({"entry": "a", "nodes": {"a": {"tool": "nothing"}}, "edges": {"a": "END"}})
    state = {"x": 1}
    outcome = step(graph, "a", state)
    assert outcome.step.updates == {}
    assert outcome.step.state == state


def test_a_failing_tool_fails_the_step_and_the_run_with_the_reason() -> None:
    graph = graph_of({"entry": "a", "nodes": {"a": {"tool": "explode"}}, "edges": {"a": "END"}})
    outcome = step(graph, "a", {"x": 1}, seq=2)
    reason = "tool 'explode' failed: RuntimeError: disk on fire"
    assert outcome.end is not None
    assert (outcome.end.status, outcome.end.error) == ("failed", reason)
    record = outcome.step
    assert (record.status, record.run_status, record.error) == ("failed", "failed", reason)
    assert record.state == {"x": 1}  # the state before the step is kept
    assert (record.updates, record.next_node, outcome.next_node) == ({}, None, None)


def test_a_tool_missing_from_the_registry_fails_the_run() -> None:
    # the graph was validated against a registry that had the tool; this one has not
    graph = build_graph({"entry": "a", "nodes": {"a": {"tool": "gone"}}, "edges": {"a": "END"}})
    outcome = step(graph, "a", {})
    assert outcome.end is not None and outcome.end.status == "failed"
    assert outcome.end.error == "tool 'gone' not found"


def test_no_matching_case_and_no_default_fails_with_a_clear_reason() -> None:
    graph = graph_of(
        {
            "entry": "a",
            "nodes": {"a": {"tool": "count"}},
            "branches": {"a": {"cases": [{"when": "n > 5", "to": "END"}]}},
        }
    )
    outcome = step(graph, "a", {"n": 0})
    assert outcome.end is not None and outcome.end.status == "failed"
    assert outcome.end.error == (
        "routing after node 'a' failed: no branch of node 'a' matched ('n > 5') and no default"
    )
    # the tool did run: its updates and the state after it are recorded
    assert outcome.step.updates == {"n": 1}
    assert outcome.step.state == {"n": 1}


def test_a_condition_reading_a_missing_key_fails_naming_the_key() -> None:
    graph = graph_of(
        {
            "entry": "a",
            "nodes": {"a": {"tool": "count"}},
            "branches": {
                "a": {"cases": [{"when": "quality_score >= 7", "to": "END"}], "default": "a"}
            },
        }
    )
    outcome = step(graph, "a", {})
    assert outcome.end is not None and outcome.end.status == "failed"
    assert "routing after node 'a' failed" in outcome.end.error  # type: ignore[operator]
    assert "missing state key 'quality_score'" in outcome.end.error  # type: ignore[operator]
    assert outcome.step.error == outcome.end.error


def test_reaching_the_step_limit_fails_with_the_limit_in_the_reason() -> None:
    # Given a limit of 5 steps: seqs 0..4 may run
    graph = graph_of(
        {
            "entry": "a",
            "nodes": {"a": {"tool": "count"}},
            "branches": {"a": {"cases": [{"when": "n > 100", "to": "END"}], "default": "a"}},
        }
    )
    # When step 3 runs, the run goes on
    assert step(graph, "a", {"n": 0}, seq=3, max_steps=5).end is None
    # When step 4 (the fifth) runs and END is not reached, the run fails
    outcome = step(graph, "a", {"n": 4}, seq=4, max_steps=5)
    assert outcome.end is not None and outcome.end.status == "failed"
    assert outcome.end.error is not None
    assert "step limit reached: 5 steps ran without reaching END" in outcome.end.error
    assert "the next node would have been 'a'" in outcome.end.error
    # And the last step itself is kept: it ran fine, its state is the run's final state
    record = outcome.step
    assert (record.status, record.run_status, record.state) == ("ok", "failed", {"n": 5})
    assert outcome.next_node is None


def test_the_last_allowed_step_may_still_complete() -> None:
    graph = graph_of({"entry": "a", "nodes": {"a": {"tool": "count"}}, "edges": {"a": "END"}})
    assert step(graph, "a", {}, seq=0, max_steps=1).end == COMPLETED


def test_a_state_too_large_fails_and_keeps_the_previous_state() -> None:
    graph = graph_of(
        {
            "entry": "a",
            "nodes": {"a": {"tool": "grow"}},
            "branches": {
                "a": {"cases": [{"when": "len(blob) > 5000", "to": "END"}], "default": "a"}
            },
        }
    )
    state = {"small": True}
    # Given a limit above the input but below the state after the tool
    limit = state_size(state) + 100
    outcome = step(graph, "a", state, state_limit=limit)
    # Then the run fails, saying how large and what limit, and the previous state is kept
    assert outcome.end is not None and outcome.end.status == "failed"
    size = state_size({**state, "blob": "x" * 1_000})
    assert outcome.end.error == (
        f"state after node 'a' would be {size} bytes serialized, above the limit of {limit}; "
        "the last committed state is kept"
    )
    assert outcome.step.state == state
    assert outcome.step.updates == {}
    # And without a limit (the in-process runner), the same step goes on
    assert step(graph, "a", state, state_limit=None).end is None


def test_a_huge_tool_error_is_stored_cut_short_with_what_was_left_out() -> None:
    # Given a tool that raises with a 500 KB message
    graph = graph_of({"entry": "a", "nodes": {"a": {"tool": "rant"}}, "edges": {"a": "END"}})
    # When its step runs
    outcome = step(graph, "a", {})
    # Then the step and the run record the start of the message and how much was cut
    head = "tool 'rant' failed: ValueError: "
    left_out = len(head) + 500_000 - MAX_ERROR_CHARS
    expected = f"{head}{'e' * (MAX_ERROR_CHARS - len(head))}... ({left_out} more characters)"
    assert outcome.step.error == expected
    assert outcome.end is not None and outcome.end.error == expected


def test_a_state_too_large_is_refused_before_a_routing_failure_could_store_it() -> None:
    # Given a node whose tool grows the state past the limit, and a branch that cannot route
    graph = graph_of(
        {
            "entry": "a",
            "nodes": {"a": {"tool": "grow"}},
            "branches": {"a": {"cases": [{"when": "missing > 1", "to": "END"}]}},
        }
    )
    state = {"small": True}
    # When the step runs with a limit below the grown state
    outcome = step(graph, "a", state, state_limit=state_size(state) + 100)
    # Then it fails for the size, and the step keeps the previous state, not the grown one
    assert outcome.step.error is not None and "above the limit" in outcome.step.error
    assert (outcome.step.state, outcome.step.updates) == (state, {})


def test_state_size_is_the_compact_json_size() -> None:
    assert state_size({"a": 1}) == len('{"a":1}')
    assert state_size({"é": "x"}) == len('{"\\u00e9":"x"}')
    assert state_size({"t": {1, 2}}) > 0  # anything json cannot write is measured by str()
