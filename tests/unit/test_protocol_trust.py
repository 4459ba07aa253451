"""The step kernel's defences, over the in-memory adapters: a hop carries no authority, a
cancel stops a map, a run is never stranded (the outbox and the sweeper), a map of any width
closes, and a step means the same whatever the graph's shape.

Each test names the defect it guards; each was red on the protocol before the kernel.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from engine.errors import RetryLater
from engine.memory import MemoryQueue, MemoryRunStore
from engine.ports import Hop
from engine.runner import InProcessRunner
from engine.service import EngineConfig
from engine.step_records import MAX_TASK_SUMMARIES
from engine.toolkits.basics import toolkit as basics
from engine.tools import ToolContext, Toolkit
from engine.validation import build_graph
from tests import worlds

tools = Toolkit("trust-tests")
ran: list[str] = []


@tools.tool
def count(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    ran.append(ctx.task)
    return {"n": state.get("n", 0) + 1}


@tools.tool
def grade(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    ran.append(ctx.task)
    return {"graded": [ctx.idempotency_key]}


LOOP = {
    "entry": "count",
    "max_steps": 5,
    "nodes": {"count": {"tool": "count"}, "again": {"tool": "count"}},
    "edges": {"count": "again"},
    "branches": {"again": {"cases": [{"when": "n >= 4", "to": "END"}], "default": "count"}},
}
HIJACK = {  # the same node names, but "again" loops (nearly) for ever
    "entry": "count",
    "max_steps": 10_000,
    "nodes": {"count": {"tool": "count"}, "again": {"tool": "count"}},
    "edges": {"count": "again"},
    "branches": {"again": {"cases": [{"when": "n < 0", "to": "END"}], "default": "count"}},
}
MAP = {
    "entry": "split",
    "state": {"graded": {"reducer": "append"}},
    "nodes": {
        "split": {"tool": "count"},
        "grade": {"tool": "grade", "map": {"over": "docs", "as": "doc", "max_concurrency": 2}},
    },
    "edges": {"split": "grade", "grade": "END"},
}


class World(worlds.World):
    """The protocol's world over this module's tools, with nothing run yet."""

    def __init__(self, **config: Any) -> None:
        ran.clear()
        super().__init__(tools, **config)


def test_a_forged_hop_of_another_graph_cannot_take_a_running_run_over() -> None:
    # Given a run limited to 5 steps at its slot 1, and another owner's endless graph whose
    # nodes have the same names
    world = World()
    run, _ = world.service.start_run(world.graph(LOOP), {"n": 0})
    world.deliver(world.queue.hops.popleft())
    hijack = world.graph(HIJACK)
    # When a forged hop for the run's next slot names the other graph
    forged = Hop(run.run_id, hijack, 1, "again")
    # Then it changes nothing, and the run ends as its own graph says
    assert world.deliver(forged) == "stale"
    assert world.store.get_run(run.run_id).steps == 1
    world.drain()
    done = world.store.get_run(run.run_id)
    assert (done.status, done.state, done.steps) == ("completed", {"n": 4}, 4)


def test_what_a_hop_carries_besides_its_task_is_never_used() -> None:
    # Given an endless loop limited to 5 steps
    world = World()
    endless = dict(HIJACK, max_steps=5)
    run, _ = world.service.start_run(world.graph(endless), {"n": 0})
    world.queue.hops.clear()
    # When its first hop arrives with a made-up state and step limit (an older message
    # shape, or a forgery)
    doc = {"run_id": run.run_id, "graph_id": run.graph_id, "seq": 0, "node": "count"}
    forged = Hop.from_dict({**doc, "state": {"n": 1000}, "max_steps": 10_000})
    assert world.deliver(forged) == "committed"
    world.drain()
    # Then the run used its committed input and its own limit
    done = world.store.get_run(run.run_id)
    assert (done.status, done.steps, done.state) == ("failed", 5, {"n": 5})
    assert done.error is not None and "step limit reached: 5 supersteps" in done.error


def test_a_dead_letter_for_a_live_or_committed_task_changes_nothing() -> None:
    world = World(lease_s=60)
    run, _ = world.service.start_run(world.graph(MAP), {"docs": list(range(4))})
    world.deliver(world.queue.hops.popleft())
    first, second = world.queue.hops.popleft(), world.queue.hops.popleft()
    assert world.deliver(first) == "committed"
    # A letter while the slot is young: its task may be running; it is looked at again later
    with pytest.raises(RetryLater):
        world.service.fail_hop(second, "forged")
    # A letter for a task that committed, even once the lease has passed
    world.clock.now += 61
    assert world.service.fail_hop(first, "a duplicate letter") is False
    assert world.store.get_run(run.run_id).status == "running"
    # But the live task's letter, after the lease, fails the run
    assert world.service.fail_hop(second, "dead-lettered") is True
    assert world.store.get_run(run.run_id).status == "failed"


@pytest.mark.parametrize("cap", [2, None], ids=["capped", "uncapped"])
def test_a_cancel_stops_a_map_that_is_not_the_first_superstep(cap: int | None) -> None:
    # Given a map of 12 items at superstep 1, two of them committed
    doc = {**MAP, "nodes": {**MAP["nodes"], "grade": {"tool": "grade", "map": {
        "over": "docs", "as": "doc", **({"max_concurrency": cap} if cap else {})}}}}  # fmt: skip
    world = World()
    run, _ = world.service.start_run(world.graph(doc), {"docs": list(range(12))})
    world.deliver(world.queue.hops.popleft())
    for _ in range(2):
        world.deliver(world.queue.hops.popleft())
    started = list(ran)
    # When the run is cancelled, and every hop still queued (or sent later) is delivered
    world.service.cancel_run(run.run_id)
    world.drain()
    # Then no item started after the cancel answered, and the run stays cancelled
    assert ran == started
    assert world.store.get_run(run.run_id).status == "cancelled"


def test_a_run_whose_first_dispatch_died_is_swept_after_the_lease() -> None:
    # Given a request that created its run and died before its hops were sent
    world = World(lease_s=60)
    graph_id = world.graph(LOOP)
    world.service.protocol.start = lambda *a, **k: None  # type: ignore[method-assign]
    run, _ = world.service.start_run(graph_id, {"n": 0})
    del world.service.protocol.start
    assert not world.queue.hops
    # When the sweeper runs within the lease, it leaves the run alone
    assert world.service.sweep() == {}
    # And after it, it re-sends the run's hop, and the run ends
    world.clock.now += 61
    assert world.service.sweep() == {run.run_id: 1}
    world.drain()
    assert world.store.get_run(run.run_id).status == "completed"


def test_a_step_committed_and_never_dispatched_is_sent_by_the_sweeper() -> None:
    # Given a worker that committed step 0 and died before its dispatch, never redelivered
    world = World(lease_s=60)
    run, _ = world.service.start_run(world.graph(LOOP), {"n": 0})
    hop = world.queue.hops.popleft()
    world.service.protocol.queue = MemoryQueue()  # its sends go nowhere
    world.deliver(hop)
    world.service.protocol.queue = world.queue
    assert world.store.get_run(run.run_id).steps == 1 and not world.queue.hops
    # When the sweeper runs after the lease, Then the outbox (step 0's successor) is sent
    world.clock.now += 61
    assert world.service.sweep() == {run.run_id: 1}
    world.drain()
    assert world.store.get_run(run.run_id).state == {"n": 4}


def test_the_sweeper_resends_only_the_map_items_that_are_due() -> None:
    # Given a capped map whose in-flight items were lost
    world = World(lease_s=60)
    run, _ = world.service.start_run(world.graph(MAP), {"docs": list(range(6))})
    world.deliver(world.queue.hops.popleft())
    world.deliver(world.queue.hops.popleft())  # item 0 commits and starts item 2
    world.queue.hops.clear()  # items 1 and 2 lost
    # When the sweeper runs after the lease
    world.clock.now += 61
    assert world.service.sweep() == {run.run_id: 2}
    # Then it sent the two due items (the cap), and the run ends with every item once
    assert sorted(h.index for h in world.queue.hops) == [1, 2]
    world.drain()
    done = world.store.get_run(run.run_id)
    assert done.status == "completed" and len(done.state["graded"]) == 6


def test_a_request_dispatches_only_the_first_chunk_of_a_wide_map() -> None:
    world = World()
    world.service.start_run(world.graph({**MAP, "entry": "grade", "nodes": {
        "grade": {"tool": "grade", "map": {"over": "docs", "as": "doc"}}}, "edges": {
        "grade": "END"}}), {"docs": list(range(10_000))})  # fmt: skip
    assert len(world.queue.hops) == EngineConfig().map_window


def test_a_map_too_wide_for_one_item_closes_with_its_tasks_kept_apart() -> None:
    # Given a store that refuses items over 20 KB (DynamoDB's limit is 400 KB) and a map of
    # 1,000 items, whose task summaries alone take about 80 KB
    store = MemoryRunStore(item_limit_bytes=20_000)
    doc = {"entry": "grade", "state": {"total": {"reducer": "add"}},
           "nodes": {"grade": {"tool": "emit", "settings": {"key": "total", "value": 1},
                               "map": {"over": "docs", "as": "doc"}}},
           "edges": {"grade": "END"}}  # fmt: skip
    graph = build_graph(doc, basics.names())
    # When it runs in process (the durable protocol over the memory adapters)
    result = InProcessRunner(basics, store=store).run(graph, {"docs": [0] * 1_000}, run_id="r_w")
    # Then it completes; its step keeps some summaries and the count, every task its record
    assert (result.status, result.state["total"]) == ("completed", 1_000)
    step = store.get_step("r_w", 0)
    assert step is not None and step.tasks_total == 1_000
    assert len(step.tasks) == MAX_TASK_SUMMARIES
    assert len(store.list_tasks("r_w", 0)) == 1_000


BAD_ROUTE = {
    "entry": "count",
    "nodes": {"count": {"tool": "count"}, "other": {"tool": "count"}},
    "branches": {"count": {"cases": [{"when": "missing > 1", "to": "END"}], "default": "other"}},
    "edges": {"other": "END"},
}
WITH_MAP = {
    **BAD_ROUTE,
    "state": {"graded": {"reducer": "append"}},
    "nodes": {**BAD_ROUTE["nodes"],
              "grade": {"tool": "grade", "map": {"over": "docs", "as": "doc"}}},  # type: ignore[dict-item]
    "branches": {"count": {"cases": [{"when": "missing > 1", "to": "grade"}],
                           "default": "other"}},
    "edges": {"other": "END", "grade": "END"},
}  # fmt: skip


def test_a_step_means_the_same_in_a_chain_and_in_a_graph_with_a_map() -> None:
    # Given the same failing route, in a chain and in a graph that has a map elsewhere
    chain = build_graph(BAD_ROUTE, tools.names())
    with_map = build_graph(WITH_MAP, tools.names())
    results = [InProcessRunner(tools).run(g, {"n": 1}) for g in (chain, with_map)]
    # Then both keep the state before the step, with the same error and the same log entry
    assert (results[1].status, results[1].error) == (results[0].status, results[0].error)
    assert results[1].state == {**results[0].state, "graded": []}  # its reduced key starts empty
    assert results[0].state == {"n": 1} and "routing after 'count' failed" in str(results[0].error)
    assert results[0].log[0]["updates"] == results[1].log[0]["updates"] == {}


def test_every_map_item_gets_its_own_idempotency_key() -> None:
    result = InProcessRunner(tools).run(build_graph(MAP, tools.names()), {"docs": [1, 2, 3]})
    assert sorted(result.state["graded"]) == [f"{result.run_id}:1:grade[{i}]" for i in range(3)]


CHILD = {"name": "child", "entry": "x", "nodes": {"x": {"tool": "count"}}, "edges": {"x": "END"}}
ASKS_CHILD = {"entry": "ask", "nodes": {"ask": {"graph": "child"}}, "edges": {"ask": "END"}}


@pytest.mark.parametrize("doc", [LOOP, ASKS_CHILD], ids=["tool", "subgraph"])
def test_an_attempt_no_retry_scheduled_is_never_believed(doc: dict[str, Any]) -> None:
    # Given a running run whose first node has no retry policy (a tool, or a child run)
    world = World()
    world.graph(CHILD)
    run, _ = world.service.start_run(world.graph(doc), {"n": 0})
    genuine = world.queue.hops.popleft()
    # When a hop for its open slot says it is the task's third attempt
    forged = Hop(run.run_id, run.graph_id, 0, genuine.node, attempt=3)
    # Then it is stale: nothing ran, no child started, and the slot is still open
    assert world.deliver(forged) == "stale"
    assert ran == [] and world.queue.hops == type(world.queue.hops)()
    assert [r.run_id for r in world.store.list_runs().items] == [run.run_id]
    # and the genuine hop runs the task as its first attempt
    world.deliver(genuine)
    world.drain()
    assert world.store.get_step(run.run_id, 0).attempt == 1
    assert world.store.get_run(run.run_id).status == "completed"
