"""Timers: a wait node as a delayed hop over the in-memory adapters (held until its time,
held again when it comes early, swept only once it is due), its declaration, and the
in-process runner holding it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from engine.errors import GraphValidationError
from engine.runner import InProcessRunner
from engine.timers import run_wakes_at
from engine.tools import ToolContext, Toolkit
from engine.validation import build_graph
from tests import worlds

tools = Toolkit("timer-tests")


@tools.tool
def visit(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    return {"trail": [*state.get("trail", []), ctx.node]}


def waiting(wait: dict[str, Any]) -> dict[str, Any]:
    return {
        "entry": "before",
        "nodes": {"before": {"tool": "visit"}, "pause": {"wait": wait}, "after": {"tool": "visit"}},
        "edges": {"before": "pause", "pause": "after", "after": "END"},
    }


class World(worlds.World):
    """The protocol's world over this module's tools, and when a run's wait ends."""

    def __init__(self, **config: Any) -> None:
        super().__init__(tools, **config)

    def wakes_at(self, run_id: str) -> float | None:
        run = self.store.get_run(run_id)
        return run_wakes_at(self.store, self.service.graph(run.graph_id), run)


def test_a_wait_node_is_declared_without_a_tool() -> None:
    built = build_graph(waiting({"seconds": 60}), tools.names())
    assert build_graph(built.to_dict(), tools.names()) == built
    doc = waiting({"second": 60})
    doc["nodes"]["pause"]["tool"] = "visit"
    with pytest.raises(GraphValidationError) as caught:
        build_graph(doc, tools.names())
    found = {p.location: p.message for p in caught.value.problems}
    assert "did you mean 'seconds'" in found["nodes.pause.wait.second"]
    assert found["nodes.pause.tool"] == "a wait node runs no tool: it has no tool"


def test_a_wait_is_a_hop_held_until_its_time_while_the_run_stays_running() -> None:
    # Given a run at its wait node, whose superstep opened when "before" committed
    world = World()
    run_id = world.start(waiting({"seconds": 3600}))
    assert world.deliver(world.queue.hops.popleft()) == "committed"
    opened = world.store.get_step(run_id, 0).ended_at  # type: ignore[union-attr]
    # When its hop comes at once, Then it is held until its time, and nothing is committed
    assert world.deliver(world.queue.hops.popleft()) == "waiting"
    (held,) = world.queue.hops
    assert held.delay_s == pytest.approx(opened + 3600 - world.clock.now)
    run = world.store.get_run(run_id)
    assert (run.status, run.steps, world.wakes_at(run_id)) == ("running", 1, opened + 3600)
    # When it comes back at its time, Then the run goes on, the wait as a step of its own
    world.clock.now = opened + 3600
    world.queue.drain(world.deliver)
    done = world.store.get_run(run_id)
    assert (done.status, done.state["trail"], done.steps) == ("completed", ["before", "after"], 3)
    assert world.wakes_at(run_id) is None


def test_a_wait_until_a_time_in_the_state() -> None:
    world = World()
    deadline = "2023-11-15T00:13:20+01:00"  # an hour after the clock's 22:13:20 UTC
    run_id = world.start(waiting({"until": "deadline"}), {"deadline": deadline})
    assert world.deliver(world.queue.hops.popleft()) == "committed"
    assert world.wakes_at(run_id) == 1_700_003_600.0
    assert world.deliver(world.queue.hops.popleft()) == "waiting"
    world.clock.now = 1_700_003_600.0
    world.queue.drain(world.deliver)
    assert world.store.get_run(run_id).status == "completed"


def test_a_wait_until_something_that_is_no_time_fails_the_run_with_why() -> None:
    world = World()
    run_id = world.start(waiting({"until": "deadline"}), {"deadline": "tomorrow"})
    world.queue.drain(world.deliver)
    run = world.store.get_run(run_id)
    assert run.status == "failed"
    assert (
        run.error is not None and "state key 'deadline' holds 'tomorrow', not a time" in run.error
    )


def test_a_held_wait_that_is_lost_is_swept_only_once_due() -> None:
    world = World(lease_s=60)
    run_id = world.start(waiting({"seconds": 600}))
    world.deliver(world.queue.hops.popleft())
    opened = world.store.get_step(run_id, 0).ended_at  # type: ignore[union-attr]
    assert world.deliver(world.queue.hops.popleft()) == "waiting"
    world.queue.hops.clear()  # the held hop is lost
    # The slot is older than the lease, but its wait is not over: the sweeper leaves it
    world.clock.now = opened + 300
    assert world.service.sweep() == {}
    world.clock.now = opened + 600 + 60
    assert world.service.sweep() == {run_id: 1}
    world.queue.drain(world.deliver)
    assert world.store.get_run(run_id).status == "completed"


def test_without_delays_the_sweeper_sends_the_wait_at_its_time() -> None:
    world = World(lease_s=60, sweeper_delays=True)
    run_id = world.start(waiting({"seconds": 30}))
    world.deliver(world.queue.hops.popleft())
    opened = world.store.get_step(run_id, 0).ended_at  # type: ignore[union-attr]
    assert world.deliver(world.queue.hops.popleft()) == "waiting"
    assert not world.queue.hops  # nothing held: self-invocation cannot hold a hop
    world.clock.now = opened + 29
    assert world.service.sweep() == {}
    world.clock.now = opened + 30
    assert world.service.sweep() == {run_id: 1}
    world.queue.drain(world.deliver)
    assert world.store.get_run(run_id).status == "completed"


def test_the_in_process_runner_holds_a_wait() -> None:
    result = InProcessRunner(tools).run(build_graph(waiting({"seconds": 0.05}), tools.names()))
    assert (result.status, result.state["trail"]) == ("completed", ["before", "after"])
    assert [entry["node"] for entry in result.log] == ["before", "pause", "after"]
