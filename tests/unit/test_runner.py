"""The in-process runner: the reference loop, its events, its log and its limits."""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import threading
import weakref
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from engine.graph import Graph
from engine.memory import MemoryRunStore
from engine.ports import Hop
from engine.runner import DEFAULT_MAX_STEPS, InProcessRunner, PoolQueue
from engine.tools import ToolContext, Toolkit, load_toolkits
from engine.validation import build_graph

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
tools = Toolkit("runner-tests")


@tools.tool
def count(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    return {"n": state.get("n", 0) + 1}


@tools.tool
async def double(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"n": state["n"] * 2}


@tools.tool
def explode(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    raise ValueError(f"bad n: {state['n']}")


def loop_until(limit: int, max_steps: int | None = None) -> Graph:
    doc: dict[str, Any] = {
        "entry": "count",
        "nodes": {"count": {"tool": "count"}},
        "branches": {
            "count": {"cases": [{"when": f"n >= {limit}", "to": "END"}], "default": "count"}
        },
    }
    if max_steps is not None:
        doc["max_steps"] = max_steps
    return build_graph(doc, tools.names())


CHAIN = build_graph(
    {
        "entry": "count",
        "nodes": {"count": {"tool": "count"}, "double": {"tool": "double"}},
        "edges": {"count": "double", "double": "END"},
    },
    tools.names(),
)


def ticking_clock() -> Any:
    ticks = itertools.count()
    return lambda: 1_700_000_000.0 + next(ticks)


def test_a_run_goes_to_completion_with_an_async_tool() -> None:
    result = InProcessRunner(tools).run(CHAIN, {"n": 4, "other": "kept"}, run_id="r_x")
    assert (result.run_id, result.status, result.steps, result.error) == (
        "r_x",
        "completed",
        2,
        None,
    )
    assert result.state == {"n": 10, "other": "kept"}
    # And its log is the steps committed in the runner's own memory store
    assert [(e["seq"], e["node"]) for e in result.log] == [(0, "count"), (1, "double")]


def test_the_input_is_not_changed() -> None:
    given = {"n": 0}
    InProcessRunner(tools).run(loop_until(3), given)
    assert given == {"n": 0}


def test_events_are_running_then_one_per_step_in_order_then_the_final_state() -> None:
    # Given a runner that collects events
    events: list[dict[str, Any]] = []
    runner = InProcessRunner(tools, on_event=events.append, clock=ticking_clock())
    # When a three-step run completes
    result = runner.run(loop_until(3), {}, run_id="r_e")
    # Then: run running, three step events in seq order, run completed with the state
    assert [e["type"] for e in events] == ["run", "step", "step", "step", "run"]
    assert events[0] == {
        "type": "run",
        "run_id": "r_e",
        "ts": events[0]["ts"],
        "status": "running",
        "steps": 0,
    }
    steps = events[1:-1]
    assert [e["seq"] for e in steps] == [0, 1, 2]
    assert [e["updates"] for e in steps] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert [e["next"] for e in steps] == ["count", "count", "END"]
    assert all(e["run_id"] == "r_e" and e["status"] == "ok" for e in steps)
    final = events[-1]
    assert (final["status"], final["steps"], final["state"]) == ("completed", 3, {"n": 3})
    assert final["state"] == result.state
    # And the timestamps come from the injected clock, in order
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    assert events[0]["ts"] == "2023-11-14T22:13:20.000Z"


def test_the_execution_log_is_the_recorded_steps() -> None:
    # Given a runner recording into a store
    store = MemoryRunStore()
    result = InProcessRunner(tools, store=store).run(
        loop_until(4), {"n": 0}, run_id="r_l", graph_id="g_1"
    )
    # Then the log is each committed step, in order
    recorded = store.list_steps("r_l").items
    assert result.log == [{**s.log_entry(), "task": s.node} for s in recorded]
    assert [entry["seq"] for entry in result.log] == [0, 1, 2, 3] and result.steps == 4
    assert [entry["updates"] for entry in result.log] == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]
    assert result.log[-1]["run_status"] == "completed"
    # And the stored run is final, with the runner's result
    run = store.get_run("r_l")
    assert (run.graph_id, run.status, run.state, run.steps, run.node) == (
        "g_1",
        "completed",
        {"n": 4},
        4,
        None,
    )
    assert run.input == {"n": 0}


def test_the_default_step_limit_fails_an_endless_loop() -> None:
    events: list[dict[str, Any]] = []
    result = InProcessRunner(tools, on_event=events.append).run(loop_until(10_000), {})
    assert result.status == "failed"
    assert result.steps == DEFAULT_MAX_STEPS == 100
    assert result.state == {"n": 100}  # the last step's state is kept
    assert result.error is not None and "step limit reached: 100 supersteps" in result.error
    assert events[-1]["status"] == "failed" and events[-1]["reason"] == result.error
    assert "state" not in events[-1]


def test_the_graphs_max_steps_and_a_per_run_override() -> None:
    graph = loop_until(10_000, max_steps=7)
    assert InProcessRunner(tools).run(graph, {}).steps == 7
    overridden = InProcessRunner(tools).run(graph, {}, max_steps=12)
    assert (overridden.status, overridden.steps) == ("failed", 12)
    assert overridden.error is not None and "12 supersteps" in overridden.error
    # and a run that finishes within its limit is not touched by it
    assert InProcessRunner(tools).run(loop_until(5), {}, max_steps=5).status == "completed"


def test_a_tool_failure_fails_the_run_and_keeps_the_state() -> None:
    # Given a graph whose second node raises
    graph = build_graph(
        {
            "entry": "count",
            "nodes": {"count": {"tool": "count"}, "boom": {"tool": "explode"}},
            "edges": {"count": "boom", "boom": "END"},
        },
        tools.names(),
    )
    store = MemoryRunStore()
    events: list[dict[str, Any]] = []
    # When it runs
    result = InProcessRunner(tools, store=store, on_event=events.append).run(
        graph, {}, run_id="r_f"
    )
    # Then the run fails with the tool's error, the state of the last good step is kept
    reason = "task 'boom': tool 'explode' failed: ValueError: bad n: 1"
    assert (result.status, result.steps, result.error, result.state) == (
        "failed",
        2,
        reason,
        {"n": 1},
    )
    assert [entry["status"] for entry in result.log] == ["ok", "failed"]
    assert result.log[-1]["error"] == reason
    assert (store.get_run("r_f").status, store.get_run("r_f").error) == ("failed", reason)
    assert events[-2]["error"] == reason and events[-1]["reason"] == reason


def test_the_log_read_later_is_the_runs_log_at_its_end() -> None:
    # Given a failed run, recorded into a store, whose log nobody has read yet
    graph = build_graph(
        {"entry": "boom", "nodes": {"boom": {"tool": "explode"}}, "edges": {"boom": "END"}},
        tools.names(),
    )
    store = MemoryRunStore()
    result = InProcessRunner(tools, store=store).run(graph, {"n": 1}, run_id="r_later")
    # When a step is committed after its end (a redrive's entry) and the log then read
    failed = store.get_step("r_later", 0)
    assert failed is not None and result.steps == 1
    store.commit_step(replace(failed, seq=1, status="ok", source="redrive", run_status="running"))
    # Then the log is the one the run ended with, read from its store once
    assert [(e["seq"], e["status"]) for e in result.log] == [(0, "failed")]
    assert result.log is result.log


def test_a_routing_failure_fails_the_run() -> None:
    graph = build_graph(
        {
            "entry": "count",
            "nodes": {"count": {"tool": "count"}},
            "branches": {
                "count": {"cases": [{"when": "missing > 1", "to": "END"}], "default": "count"}
            },
        },
        tools.names(),
    )
    result = InProcessRunner(tools).run(graph, {})
    assert result.status == "failed" and result.steps == 1
    assert result.error is not None and "missing state key 'missing'" in result.error


def test_a_state_limit_is_enforced_when_given() -> None:
    result = InProcessRunner(tools, state_limit_bytes=5).run(loop_until(3), {})
    assert result.status == "failed" and result.steps == 1
    assert result.error is not None and "above the limit of 5" in result.error
    assert result.state == {}


# -- the code-review example ---------------------------------------------------------------------
def _example_file(name: str) -> Path:
    path = EXAMPLES / name
    if not path.exists():
        pytest.skip(f"{path} is not written yet")
    return path


def test_the_code_review_loop_ends_by_improvement() -> None:
    # Given the example graph, toolkit and messy sample code
    graph_doc = json.loads(_example_file("code_review.json").read_text())
    code = _example_file("sample_code.py").read_text()
    try:
        registry = load_toolkits(["engine.toolkits.code_review"])
    except ImportError as exc:
        pytest.skip(f"the code-review toolkit is not importable yet: {exc}")
    graph = build_graph(graph_doc, registry.names())
    # When it runs in process, recording every step
    store = MemoryRunStore()
    result = InProcessRunner(registry, store=store).run(graph, {"code": code})
    # Then it completes because the code got good enough, not because it ran out of iterations
    assert result.status == "completed", result.error
    assert result.state["quality_score"] >= 7
    assert result.state["iteration"] < 5
    # And it looped at least once: the first evaluation was below the bar, and code changed
    assert (
        [entry["node"] for entry in result.log].count("evaluate") == result.state["iteration"] >= 2
    )
    assert result.state["history"][0]["quality_score"] < 7
    assert result.state["code"] != code


def test_the_pool_queue_waits_for_every_hop_sent_by_hops_it_ran() -> None:
    # Given a queue whose hops each send two more, down to depth 6: the first of each pair
    # runs on its sender's thread, the second is handed to the pool
    applied: list[int] = []
    lock = threading.Lock()

    def apply(hop: Hop) -> None:
        with lock:
            applied.append(hop.seq)
        if hop.seq < 6:
            queue.dispatch_batch([Hop("r", "g", hop.seq + 1, "a"), Hop("r", "g", hop.seq + 1, "b")])

    queue = PoolQueue(apply, threads=4)
    # When one hop is sent and the queue waited for
    queue.dispatch(Hop("r", "g", 0, "a"))
    queue.wait()
    # Then every hop of the tree ran before wait returned, each once
    assert sorted(applied) == sorted(d for d in range(7) for _ in range(2**d))


def test_the_pool_does_not_wait_for_held_hops_once_nothing_is_left_for_them() -> None:
    # Given a pool with a hop held for an hour (a deadline's) beside one that runs now
    applied: list[Hop] = []
    queue = PoolQueue(applied.append, threads=2)
    queue.dispatch(Hop("r", "g", 1, "held", delay_s=3600))
    queue.dispatch(Hop("r", "g", 0, "now"))
    # When it is waited for, and its caller says the run has ended
    queue.wait(ended=lambda: True)
    # Then the hop that ran is done, and the held one was dropped, never applied
    assert [h.node for h in applied] == ["now"]


def test_a_chain_runs_on_its_callers_thread_and_a_fan_outs_branches_side_by_side() -> None:
    # Given tools that note the thread they run on, and two that can only both finish when
    # they run at once (each waits for the other at a barrier)
    seen: list[str] = []
    both = threading.Barrier(2, timeout=10)
    local = Toolkit("threads")

    @local.tool
    def note(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
        seen.append(threading.current_thread().name)
        return {}

    @local.tool
    def meet(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
        both.wait()  # raises BrokenBarrierError (the task fails) if the other never comes
        return {ctx.node: True}

    graph = build_graph(
        {
            "entry": "a",
            "nodes": {"a": {"tool": "note"}, "b": {"tool": "note"}, "left": {"tool": "meet"},
                      "right": {"tool": "meet"}},
            "edges": {"a": "b", "b": ["left", "right"], "left": "END", "right": "END"},
        },
        local.names(),
    )  # fmt: skip
    # When it runs in process
    result = InProcessRunner(local).run(graph, {})
    # Then the chain's steps ran on the caller's thread (no thread started or handed over
    # for them), and the fan-out's branches met: they ran side by side
    assert seen == [threading.current_thread().name] * 2
    assert result.status == "completed", result.error
    assert result.state["left"] is result.state["right"] is True


def test_a_tool_that_changes_its_state_in_place_changes_only_what_it_returns() -> None:
    # Given tools that append to the list they read, in place, as a LangGraph node might,
    # and a map whose items are dicts that its tool changes in place
    local = Toolkit("in-place")

    @local.tool
    def add(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
        items = state["items"]
        items.append(ctx.node)
        return {"items": items}

    @local.tool
    def mark(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
        state["doc"]["seen"] = True
        return {}

    graph = build_graph(
        {
            "entry": "a",
            "nodes": {"a": {"tool": "add"}, "b": {"tool": "add"},
                      "m": {"tool": "mark", "map": {"over": "docs", "as": "doc"}}},
            "edges": {"a": "b", "b": "m", "m": "END"},
        },
        local.names(),
    )  # fmt: skip
    given: dict[str, Any] = {"items": [], "docs": [{"id": 1}, {"id": 2}]}
    # When it runs in process
    result = InProcessRunner(local).run(graph, given)
    # Then each step's log shows the list as that step left it (as on AWS, where each hop
    # decodes its own copy), the map's items are as they were, and the caller's input is
    # untouched
    assert result.status == "completed", result.error
    assert [e["updates"].get("items") for e in result.log[:2]] == [["a"], ["a", "b"]]
    assert result.state["items"] == ["a", "b"]
    assert result.state["docs"] == [{"id": 1}, {"id": 2}]
    assert given == {"items": [], "docs": [{"id": 1}, {"id": 2}]}


def test_a_finished_run_is_freed_as_soon_as_its_result_is_let_go() -> None:
    # Given the cyclic collector off, so that only reference counting can free anything
    gc.disable()
    try:
        # When a run of a few steps ends, and its result (which reads its log from the
        # run's store when asked) is let go
        result = InProcessRunner(tools).run(loop_until(5), {"n": 0})
        assert result.status == "completed"
        assert callable(result.entries)  # the log's reader: it holds the run's store
        store = weakref.ref(result.entries.args[0])  # type: ignore[attr-defined]
        del result
        # Then the store, with every step, is gone at once: nothing held it but the result
        # (a cycle between the protocol, its hooks and its queue kept it, with the protocol,
        # until the next full collection)
        assert store() is None
    finally:
        gc.enable()
