"""A subgraph node whose child run fails goes through its node's failure handling as a tool's
task does (engine/retries.py): ``retry`` starts the task again as a new child run,
``on_error`` routes with the error under the state key ``error``; and the parent's task
records when its work started (its child's start), so that the sweeper judges the parent's
progress by the clock, not by when a child's end was told."""

from __future__ import annotations

from typing import Any

import pytest

from engine.memory import MemoryRunStore
from engine.runner import InProcessRunner
from engine.subgraphs import child_run_id
from engine.toolkits.basics import toolkit as basics
from engine.tools import ToolContext, Toolkit
from engine.validation import build_graph
from tests.worlds import Clock, World

TOOLS = Toolkit("subgraph-failures")
TOOLS.include(basics)
breaks_left: list[int] = [0]
"""How many more calls of ``breaks_at_first`` fail (a service that is down for a while)."""


@TOOLS.tool(writes=["done"])
def breaks_at_first(state: Any, ctx: ToolContext) -> dict[str, Any]:
    if breaks_left[0] > 0:
        breaks_left[0] -= 1
        raise ConnectionError("the child's service is down")
    return {"done": True}


QUICK = {"max_attempts": 2, "initial_interval_s": 0, "jitter": False}
CHILD_BREAKS = {"name": "child breaks", "entry": "x",
                "nodes": {"x": {"tool": "flaky", "settings": {"succeed_on": 0}}},
                "edges": {"x": "END"}}  # fmt: skip
CHILD_RECOVERS = {"name": "child recovers", "entry": "x",
                  "nodes": {"x": {"tool": "breaks_at_first"}}, "edges": {"x": "END"}}  # fmt: skip


def parent(child: str, **failure: Any) -> dict[str, Any]:
    """``ask`` runs ``child``, with ``failure`` (retry, on_error); ``sorry`` is its error
    route."""
    doc: dict[str, Any] = {
        "name": f"asks {child}",
        "entry": "start",
        "nodes": {
            "start": {"tool": "set_values", "settings": {"values": {"started": True}}},
            "ask": {"graph": child, "output": {"done": "done"}, **failure},
        },
        "edges": {"start": "ask", "ask": "END"},
    }
    if "on_error" in failure:
        doc["nodes"]["sorry"] = {"tool": "set_values", "settings": {"values": {"apologised": True}}}
        doc["edges"]["sorry"] = "END"
    return doc


@pytest.fixture(autouse=True)
def _service_up() -> None:
    breaks_left[0] = 0


def in_process(doc: dict[str, Any], *children: dict[str, Any]) -> tuple[Any, MemoryRunStore]:
    store = MemoryRunStore()
    named = {c["name"]: build_graph(c, toolkit=TOOLS) for c in children}
    runner = InProcessRunner(TOOLS, store=store, subgraphs=named)
    return runner.run(build_graph(doc, toolkit=TOOLS), {}), store


# -- in process -----------------------------------------------------------------------------------
def test_a_failed_child_takes_its_nodes_error_route_with_the_error_in_the_state() -> None:
    # Given a subgraph node with an error route, whose child fails
    doc = parent("child breaks", on_error="sorry")
    # When the run runs
    result, store = in_process(doc, CHILD_BREAKS)
    # Then the run goes to the error route, with the child's failure under "error"
    assert (result.status, result.error) == ("completed", None)
    assert result.state["apologised"] is True
    error = result.state["error"]
    assert (error["node"], error["task"], error["type"], error["attempts"]) == (
        "ask", "ask", "SubgraphFailed", 1)  # fmt: skip
    child = child_run_id(result.run_id, 1, "ask")
    assert child in error["message"] and "attempt 1 of x failed" in error["message"]
    assert store.get_run(child).status == "failed"
    assert [e.get("child_run_id") for e in result.log if e["task"] == "ask"] == [child]


def test_a_failed_child_is_retried_as_a_new_child_run() -> None:
    # Given a subgraph node that retries, whose first child fails and second completes
    breaks_left[0] = 1
    doc = parent("child recovers", retry=QUICK)
    # When the run runs
    result, store = in_process(doc, CHILD_RECOVERS)
    # Then the task ran a second child, whose end completed it
    assert (result.status, result.error) == ("completed", None)
    assert result.state["done"] is True
    first, second = (child_run_id(result.run_id, 1, "ask", n) for n in (1, 2))
    assert first != second
    assert (store.get_run(first).status, store.get_run(second).status) == ("failed", "completed")
    entry = next(e for e in result.log if e["task"] == "ask")
    assert (entry["child_run_id"], entry["attempt"]) == (second, 2)
    assert [(a.attempt, a.error_type) for a in store.list_attempts(result.run_id, 1)] == [
        (1, "SubgraphFailed")]  # fmt: skip


def test_a_child_failing_every_attempt_takes_the_error_route_once_retries_are_spent() -> None:
    doc = parent("child breaks", retry=QUICK, on_error="sorry")
    result, store = in_process(doc, CHILD_BREAKS)
    assert (result.status, result.state["apologised"]) == ("completed", True)
    assert result.state["error"]["attempts"] == 2
    assert [store.get_run(child_run_id(result.run_id, 1, "ask", n)).status
            for n in (1, 2)] == ["failed", "failed"]  # fmt: skip


def test_a_failed_child_without_retry_or_error_route_still_fails_its_parent() -> None:
    result, _ = in_process(parent("child breaks"), CHILD_BREAKS)
    assert result.status == "failed"
    assert "attempt 1 of x failed" in str(result.error)


def test_a_retry_on_that_does_not_name_a_childs_failure_does_not_retry_it() -> None:
    doc = parent("child breaks", retry={**QUICK, "retry_on": ["TimeoutError"]}, on_error="sorry")
    result, store = in_process(doc, CHILD_BREAKS)
    assert result.state["error"]["attempts"] == 1
    assert store.list_attempts(result.run_id, 1) == []


# -- the durable protocol ------------------------------------------------------------------------
def durable() -> World:
    world = World(TOOLS, clock=Clock(1_000.0), lease_s=60.0)
    for child in (CHILD_BREAKS, CHILD_RECOVERS):
        world.graph(child)
    return world


def test_a_lost_retry_of_a_failed_child_is_sent_by_the_sweeper_as_the_next_attempt() -> None:
    # Given a task whose first child failed and whose retry hop was lost
    breaks_left[0] = 1
    world = durable()
    run_id = world.start(parent("child recovers", retry=QUICK))
    while world.queue.hops:
        hop = world.queue.hops.popleft()
        if hop.run_id == run_id and hop.attempt == 2:
            break  # lost
        world.deliver(hop)
    assert world.store.get_run(child_run_id(run_id, 1, "ask")).status == "failed"
    # When the sweeper runs once the retry is overdue
    world.clock.now += 61
    world.service.sweep()
    world.drain()
    # Then the task's second attempt ran its second child, and the run completed
    final = world.store.get_run(run_id)
    assert (final.status, final.state.get("done")) == ("completed", True)
    assert world.store.get_run(child_run_id(run_id, 1, "ask", 2)).status == "completed"


def at_the_retrys_child() -> tuple[World, str, str]:
    """A run whose task failed its first child and is at its second attempt, delivered up to
    the second child's first hop (still queued): the world, the run and that child."""
    breaks_left[0] = 1
    world = durable()
    run_id = world.start(parent("child recovers", retry=QUICK))
    second = child_run_id(run_id, 1, "ask", 2)
    while world.queue.hops and world.queue.hops[0].run_id != second:
        world.deliver(world.queue.hops.popleft())
    return world, run_id, second


def test_cancelling_a_parent_cancels_the_child_of_its_tasks_current_attempt() -> None:
    # Given a task at its second attempt, whose child runs
    world, run_id, second = at_the_retrys_child()
    assert world.store.get_run(second).status == "running"
    # When the parent is cancelled
    world.service.cancel_run(run_id)
    world.drain()
    # Then that child is cancelled too
    assert world.store.get_run(second).status == "cancelled"
    assert world.store.get_run(run_id).status == "cancelled"


def test_a_parent_whose_last_child_told_it_is_swept_once_the_lease_has_passed() -> None:
    # Given a superstep of two children, each taking minutes, the first's end never told
    # (before, the second's task recorded its start as the time it was told, so that its
    # start plus its duration, the parent's last progress, lay minutes in the future)
    world = durable()
    children = {"name": "slow", "entry": "x",
                "nodes": {"x": {"tool": "set_values", "settings": {"values": {"x": 1}}},
                          "y": {"tool": "set_values", "settings": {"values": {"y": 1}}}},
                "edges": {"x": "y", "y": "END"}}  # fmt: skip
    world.graph(children)
    doc = {"name": "two children", "entry": "a",
           "nodes": {"a": {"tool": "set_values", "settings": {"values": {}}},
                     "b": {"graph": "slow"}, "c": {"graph": "slow"}},
           "edges": {"a": ["b", "c"], "b": "END", "c": "END"}}  # fmt: skip
    with world.parents_untold(first=1) as untold:  # the first child's worker died first
        run_id = world.start(doc)
        while world.queue.hops:
            world.clock.now += 250
            world.deliver(world.queue.hops.popleft())
    assert len(untold) == 1
    assert world.store.get_run(run_id).status == "running"
    # When the sweeper runs once the lease has passed since the last task's commit
    world.clock.now += 61
    world.service.sweep()
    world.drain()
    # Then it found the parent stalled and told it of the child that ended
    assert world.store.get_run(run_id).status == "completed"


def test_the_sweeper_leaves_a_task_alone_while_its_retrys_child_runs() -> None:
    # Given a task at its second attempt, whose child has its hop still queued (alive)
    world, run_id, second = at_the_retrys_child()
    assert [h.run_id for h in world.queue.hops] == [second]
    # When the sweeper runs after the lease
    world.clock.now += 61
    world.service.sweep()
    # Then the parent costs nothing: the first attempt's failed child is not told again
    # (its retry is not sent again); only the live child's hop is re-sent
    assert all(h.run_id == second for h in world.queue.hops)
    assert len(world.store.list_attempts(run_id, 1)) == 1
    world.drain()
    assert world.store.get_run(run_id).status == "completed"
