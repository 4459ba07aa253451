"""A tool that asks (``ctx.interrupt``) in every task of a map: each task pauses with its own
question, and each is answered by its task id. Once one is answered and committed, the run
waits for the others again: it must be ``paused`` with them pending, at once (not only once
the sweeper's lease has passed)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.memory import MemoryQueue, MemoryRunStore
from engine.service import EngineConfig, RunService
from engine.tools import Interrupt, ToolContext, Toolkit

tools = Toolkit("asked-in-a-map")


@tools.tool(writes=["seen"])
def ask_item(state: Mapping[str, Any], ctx: ToolContext) -> Interrupt:
    return ctx.interrupt(f"Keep {state['item']}?", key="kept", update={"seen": [state["item"]]})


MAP = {
    "entry": "ask",
    "nodes": {"ask": {"tool": "ask_item", "map": {"over": "items", "as": "item"}}},
    "edges": {"ask": "END"},
    "state": {"seen": {"reducer": "append"}, "kept": {"reducer": "append"}},
}


class World:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0
        self.store, self.queue = MemoryRunStore(), MemoryQueue()
        self.service = RunService(self.store, self.queue, tools, clock=lambda: self.now,
                                  config=EngineConfig(lease_s=60))  # fmt: skip
        graph_id = self.service.create_graph(MAP)[0].graph_id
        self.run_id = self.service.start_run(graph_id, {"items": ["x", "y"]})[0].run_id
        self.drain()

    def drain(self) -> None:
        self.queue.drain(lambda hop: self.service.process_hop(hop, "d"))

    def pending(self) -> list[str]:
        run = self.store.get_run(self.run_id)
        return [q["task"] for q in self.service.pending_questions(run)]


def test_each_task_of_a_map_asks_and_is_answered_by_its_task_id() -> None:
    world = World()
    assert world.store.get_run(world.run_id).status == "paused"
    assert world.pending() == ["ask[0]", "ask[1]"]
    world.service.resume_run(world.run_id, "yes", task="ask[0]")
    world.drain()
    world.now += 61  # the sweeper finds the open superstep stalled and holds the run
    world.service.sweep()
    world.drain()
    assert world.pending() == ["ask[1]"]
    world.service.resume_run(world.run_id, "no", task="ask[1]")
    world.drain()
    run = world.store.get_run(world.run_id)
    assert (run.status, run.state["seen"], run.state["kept"]) == ("completed", ["x", "y"],
                                                                  ["yes", "no"])  # fmt: skip


def test_after_one_answer_the_run_is_paused_again_with_the_other_question_at_once() -> None:
    world = World()
    world.service.resume_run(world.run_id, "yes", task="ask[0]")
    world.drain()
    assert not world.queue.hops
    assert world.store.get_run(world.run_id).status == "paused"
    assert world.pending() == ["ask[1]"]
