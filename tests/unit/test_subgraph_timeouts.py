"""A subgraph node's ``timeout_s`` bounds its child run (engine/subgraph_timeouts.py): past it,
the child is cancelled and the task fails with a ``TimeoutError``, which the node's ``retry``
(a new child) and ``on_error`` handle as any failed child's; a child that ends in time is
unaffected, and whichever of the child's end and the timeout wins, the task commits once."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from engine.errors import GraphValidationError
from engine.memory import MemoryRunStore
from engine.ports import Hop
from engine.runner import InProcessRunner
from engine.subgraph_timeouts import timed_out_reason
from engine.subgraphs import child_run_id
from engine.toolkits.basics import toolkit as basics
from engine.tools import ToolContext, Toolkit
from engine.validation import build_graph
from tests.worlds import Clock, World

TOOLS = Toolkit("subgraph-timeouts")
TOOLS.include(basics)
released = threading.Event()
"""What a slow child's tool waits for: set once the test has seen what it waits for."""
calls: list[str] = []


@TOOLS.tool(writes=["done"])
def slow_first(state: Any, ctx: ToolContext) -> dict[str, Any]:
    """Its first call waits until released (bounded), every later one returns at once."""
    calls.append(ctx.run_id)
    if len(calls) == 1:
        released.wait(30)
    return {"done": True}


@TOOLS.tool(writes=["done"])
def always_slow(state: Any, ctx: ToolContext) -> dict[str, Any]:
    calls.append(ctx.run_id)
    released.wait(30)
    return {"done": True}


TIMEOUT_S = 0.2
QUICK = {"initial_interval_s": 0, "jitter": False}
RETRY_TIMEOUTS = {**QUICK, "max_attempts": 2, "retry_on": ["TimeoutError"]}
SLOW_FIRST = {"name": "slow first", "entry": "x", "nodes": {"x": {"tool": "slow_first"}},
              "edges": {"x": "END"}}  # fmt: skip
ALWAYS_SLOW = {"name": "always slow", "entry": "x", "nodes": {"x": {"tool": "always_slow"}},
               "edges": {"x": "END"}}  # fmt: skip
QUICK_CHILD = {"name": "quick", "entry": "x",
               "nodes": {"x": {"tool": "set_values", "settings": {"values": {"done": True}}}},
               "edges": {"x": "END"}}  # fmt: skip
ASKS = {"name": "asks", "entry": "x", "nodes": {"x": {"interrupt": {"prompt": "Go on?"}}},
        "edges": {"x": "END"}}  # fmt: skip
"""A child that waits for a person nobody is: it never ends by itself."""


def parent(child: str, timeout_s: float = TIMEOUT_S, **failure: Any) -> dict[str, Any]:
    """``ask`` runs ``child`` with ``timeout_s`` and ``failure`` (retry, on_error); ``sorry``
    is its error route."""
    doc: dict[str, Any] = {
        "name": f"asks {child}",
        "entry": "start",
        "nodes": {
            "start": {"tool": "set_values", "settings": {"values": {"started": True}}},
            "ask": {"graph": child, "output": {"done": "done"}, "timeout_s": timeout_s,
                    **failure},
        },
        "edges": {"start": "ask", "ask": "END"},
    }  # fmt: skip
    if "on_error" in failure:
        doc["nodes"]["sorry"] = {"tool": "set_values", "settings": {"values": {"apologised": True}}}
        doc["edges"]["sorry"] = "END"
    return doc


@pytest.fixture(autouse=True)
def _fresh() -> Any:
    released.clear()
    calls.clear()
    yield
    released.set()  # nothing waits on past a test


def in_process(doc: dict[str, Any], *children: dict[str, Any],
               release_on: Any = None) -> tuple[Any, MemoryRunStore]:  # fmt: skip
    """Run ``doc`` in process; a slow tool is released once the sink sees an event that
    ``release_on`` accepts (by default: the parent's run ending), so that the runner, which
    waits for every hop, returns."""
    store = MemoryRunStore()
    named = {c["name"]: build_graph(c, toolkit=TOOLS) for c in children}

    def sink(event: dict[str, Any]) -> None:
        ended = event["type"] == "run" and event["status"] in ("completed", "failed")
        wanted = release_on(event) if release_on is not None else ended and event["run_id"] == "p"
        if wanted:
            released.set()

    runner = InProcessRunner(TOOLS, store=store, subgraphs=named, on_event=sink)
    return runner.run(build_graph(doc, toolkit=TOOLS), {}, run_id="p"), store


# -- in process -----------------------------------------------------------------------------------
def test_a_child_that_outlives_its_nodes_timeout_is_cancelled_and_fails_the_task() -> None:
    # Given a subgraph node with a timeout, whose child's tool takes longer than it
    doc = parent("always slow")
    # When the run runs
    result, store = in_process(doc, ALWAYS_SLOW)
    # Then the task failed with the error a tool's deadline raises, and the child was cancelled
    child = child_run_id("p", 1, "ask")
    assert result.status == "failed"
    assert f"subgraph run {child} did not end within the node's timeout_s of 0.2 s" in str(
        result.error)  # fmt: skip
    ended = store.get_run(child)
    assert (ended.status, ended.error) == ("cancelled", timed_out_reason(TIMEOUT_S))
    assert calls == [child]  # its tool ran once; its late result changed nothing
    assert ended.steps == 1 and store.get_step(child, 0).status == "cancelled"  # type: ignore[union-attr]


def test_a_timed_out_child_takes_its_nodes_error_route_as_a_timeout() -> None:
    result, store = in_process(parent("always slow", on_error="sorry"), ALWAYS_SLOW)
    assert (result.status, result.state["apologised"]) == ("completed", True)
    error = result.state["error"]
    assert (error["node"], error["type"], error["attempts"]) == ("ask", "TimeoutError", 1)
    assert store.get_run(child_run_id("p", 1, "ask")).status == "cancelled"


def test_a_retry_that_names_timeouts_starts_the_child_again() -> None:
    # Given a node retrying timeouts, whose first child outlives the timeout and whose second
    # is quick (the first's tool is released once its child was cancelled)
    first = child_run_id("p", 1, "ask")
    doc = parent("slow first", retry=RETRY_TIMEOUTS)

    def first_cancelled(event: dict[str, Any]) -> bool:
        return event["run_id"] == first and event.get("status") == "cancelled"

    # When the run runs
    result, store = in_process(doc, SLOW_FIRST, release_on=first_cancelled)
    # Then the task's second attempt ran a new child, whose end completed it
    second = child_run_id("p", 1, "ask", 2)
    assert (result.status, result.state.get("done")) == ("completed", True)
    assert (store.get_run(first).status, store.get_run(second).status) == (
        "cancelled", "completed")  # fmt: skip
    assert [(a.attempt, a.error_type) for a in store.list_attempts("p", 1)] == [
        (1, "TimeoutError")]  # fmt: skip


def test_a_retry_that_does_not_name_timeouts_does_not_retry_one() -> None:
    # (as for a tool: TimeoutError is an OSError, which LangGraph's default does not retry)
    doc = parent("always slow", retry=QUICK, on_error="sorry")
    result, store = in_process(doc, ALWAYS_SLOW)
    assert result.state["error"]["attempts"] == 1
    assert store.list_attempts("p", 1) == []


def test_a_child_that_ends_in_time_is_unaffected() -> None:
    # Given a subgraph node whose timeout its child never reaches
    doc = parent("quick", timeout_s=3600)
    # When the run runs (and the runner does not wait for the deadline's held hop)
    result, store = in_process(doc, QUICK_CHILD)
    # Then it completed with the child's result
    assert (result.status, result.state["done"]) == ("completed", True)
    assert store.get_run(child_run_id("p", 1, "ask")).status == "completed"


# -- the durable protocol, by hand ---------------------------------------------------------------
def durable(*, sweeper_delays: bool) -> World:
    world = World(TOOLS, clock=Clock(1_000.0), lease_s=60.0, sweeper_delays=sweeper_delays)
    for child in (ASKS, QUICK_CHILD):
        world.graph(child)
    return world


def deliver_but_held(world: World) -> list[Hop]:
    """Deliver every queued hop but those held for a time (SQS holds them): those, in order."""
    held: list[Hop] = []
    while world.queue.hops:
        hop = world.queue.hops.popleft()
        if hop.delay_s > 0:
            held.append(hop)
        else:
            world.deliver(hop)
    return held


def test_with_sqs_a_held_hop_keeps_the_deadline_and_times_the_child_out() -> None:
    # Given a task whose child waits for an answer nobody gives (it never ends by itself)
    world = durable(sweeper_delays=False)
    run_id = world.start(parent("asks", timeout_s=1800, on_error="sorry"))
    held = deliver_but_held(world)
    child = child_run_id(run_id, 1, "ask")
    assert world.store.get_run(child).status == "paused"
    # Then the task's hop is held until the deadline (SQS: 900 s at most)
    assert [(h.node, h.delay_s, h.recheck) for h in held] == [("ask", 900, False)]
    # When it comes early, it is held again for what is left
    world.clock.now += 900
    world.deliver(held[0])
    again = deliver_but_held(world)
    assert [(h.node, h.delay_s) for h in again] == [("ask", 900)]
    assert world.store.get_run(child).status == "paused"
    # When it comes at the deadline
    world.clock.now += 900
    world.deliver(again[0])
    assert deliver_but_held(world) == []
    # Then the child is cancelled, and the task took its error route with a TimeoutError
    assert world.store.get_run(child).status == "cancelled"
    final = world.store.get_run(run_id)
    assert (final.status, final.state["error"]["type"]) == ("completed", "TimeoutError")


def test_with_self_invocation_the_sweeper_sends_the_hop_of_a_task_past_its_deadline() -> None:
    # Given a task whose child never ends, on a carrier that cannot hold a hop
    world = durable(sweeper_delays=True)
    run_id = world.start(parent("asks", timeout_s=10, on_error="sorry"))
    assert deliver_but_held(world) == []  # nothing is held
    child = child_run_id(run_id, 1, "ask")
    # When the sweeper runs before the deadline, nothing is sent
    world.clock.now += 9
    assert world.service.sweep() == {}
    # When it runs past it (well within the lease: the slot is not stalled)
    world.clock.now += 2
    assert world.service.sweep() == {run_id: 1}
    world.drain()
    # Then the task's hop timed the child out, and the run took its error route
    assert world.store.get_run(child).status == "cancelled"
    final = world.store.get_run(run_id)
    assert (final.status, final.state["error"]["type"]) == ("completed", "TimeoutError")


def test_a_child_that_ends_as_its_deadline_passes_wins_and_the_task_commits_once() -> None:
    # Given a quick child whose last close committed, its parent untold (its worker died)
    world = durable(sweeper_delays=False)
    with world.parents_untold():
        run_id = world.start(parent("quick", timeout_s=30, on_error="sorry"))
        held = deliver_but_held(world)
    child = child_run_id(run_id, 1, "ask")
    assert world.store.get_run(child).status == "completed"
    assert world.store.get_run(run_id).status == "running"
    # When the deadline's held hop comes after the deadline
    world.clock.now += 31
    world.deliver(held[0])
    world.drain()
    # Then the child stays completed (the timeout's cancel lost its slot), and the task took
    # the child's result, once
    assert world.store.get_run(child).status == "completed"
    final = world.store.get_run(run_id)
    assert (final.status, final.state.get("done"), "error" in final.state) == (
        "completed", True, False)  # fmt: skip
    assert [s.node for s in world.store.list_steps(run_id).items] == ["start", "ask"]


def test_a_timeout_that_read_the_child_running_loses_to_its_last_close() -> None:
    # Given a worker that found the child running past its deadline (it read the child's
    # record), and the child's last close that commits before that worker's cancel
    world = durable(sweeper_delays=False)
    subgraphs = world.service.protocol.subgraphs
    with world.parents_untold():
        run_id = world.start(parent("quick", timeout_s=30, on_error="sorry"))
        world.deliver(world.queue.hops.popleft())  # start
        world.deliver(world.queue.hops.popleft())  # ask: creates the child and holds its hop
        child_id = child_run_id(run_id, 1, "ask")
        seen = world.store.get_run(child_id)
        assert seen.status == "running"
        deliver_but_held(world)  # the child's hop: its last close commits, its parent untold
    # When the worker goes on with the timeout past the deadline
    world.clock.now += 31
    graph = world.service.protocol.graphs(world.store.get_run(run_id).graph_id)
    subgraphs.time_out(seen, graph.nodes["ask"])
    world.drain()
    # Then its cancel lost the child's slot: the child stays completed, and the task took
    # the child's result, not a timeout
    assert world.store.get_run(child_id).status == "completed"
    final = world.store.get_run(run_id)
    assert (final.status, final.state.get("done"), "error" in final.state) == (
        "completed", True, False)  # fmt: skip


def test_a_timed_out_childs_end_told_again_changes_nothing() -> None:
    # Given a task timed out (its child cancelled, its error route taken)
    world = durable(sweeper_delays=False)
    run_id = world.start(parent("asks", timeout_s=30, on_error="sorry"))
    held = deliver_but_held(world)
    world.clock.now += 31
    world.deliver(held[0])
    world.drain()
    steps = world.store.list_steps(run_id).items
    # When the child's end is told again, and the held hop is delivered once more
    child = world.store.get_run(child_run_id(run_id, 1, "ask"))
    subgraphs = world.service.protocol.subgraphs
    # (the same delivery as the commit: it finishes what that left undone, if anything)
    assert subgraphs.tell_parent(child) == "recovered"
    assert world.deliver(held[0]) == "duplicate"  # its slot is taken
    world.drain()
    # Then nothing changed
    assert world.store.list_steps(run_id).items == steps
    assert world.store.get_run(child.run_id).status == "cancelled"


# -- validation -----------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [0, -5, "30", True, [30], float("inf")])
def test_a_subgraph_timeout_that_is_not_a_positive_number_is_refused(bad: Any) -> None:
    doc = parent("quick", timeout_s=bad)
    with pytest.raises(GraphValidationError) as caught:
        build_graph(doc, toolkit=TOOLS)
    assert [(p.location, p.message) for p in caught.value.problems] == [
        ("nodes.ask.timeout_s", "must be a number of seconds above 0")]  # fmt: skip


def test_a_subgraph_timeout_is_not_bound_by_the_workers_nor_given_by_defaults() -> None:
    # Given a worker whose function timeout leaves tools 25 s, and a graph whose defaults
    # give tools 20 s
    doc = {**parent("quick", timeout_s=86_400), "defaults": {"timeout_s": 20}}
    graph = build_graph(doc, toolkit=TOOLS, timeout_ceiling_s=25)
    # Then the child may take a day, and a subgraph node without its own has none
    assert graph.nodes["ask"].failure.timeout_s == 86_400
    assert graph.nodes["start"].failure.timeout_s == 20
    del doc["nodes"]["ask"]["timeout_s"]
    graph = build_graph(doc, toolkit=TOOLS, timeout_ceiling_s=25)
    assert graph.nodes["ask"].failure.timeout_s is None
