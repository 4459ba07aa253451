"""Pauses over the in-memory adapters: an interrupt node, a tool's ``ctx.interrupt`` and the
static breakpoints pause a run with no hop in flight; a resume is answered exactly once
(the same answer twice gives the same reply, another one 409, a value its schema refuses
422); parallel branches pause independently; a deadline routes to ``on_timeout``; cancel
stops a paused run; the sweeper leaves a paused run alone (it costs nothing while it
waits); and a crash after the pause's commit is recovered by the redelivery."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import pytest

from engine.errors import ConflictError, GraphValidationError, InvalidInputError
from engine.memory import MemoryQueue, MemoryRunStore, RecordingNotifier
from engine.ports import Hop, PauseRecord
from engine.service import EngineConfig, RunService
from engine.tools import Interrupt, ToolContext, Toolkit

tools = Toolkit("pause-tests")
calls: list[str] = []


@tools.tool
def plan(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    calls.append(ctx.task)
    return {"plan": "ship it"}


@tools.tool
def act(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    calls.append(ctx.task)
    return {"acted": state.get("approved")}


@tools.tool
def escalate(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    return {"escalated": True}


@tools.tool
def ask_name(state: Mapping[str, Any], ctx: ToolContext) -> Interrupt:
    calls.append(ctx.task)
    return ctx.interrupt("Your name?", key="name", schema={"type": "string"},
                         update={"asked": True})  # fmt: skip


@pytest.fixture(autouse=True)
def _fresh_calls() -> None:
    calls.clear()


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class World:
    def __init__(self, **config: Any) -> None:
        self.clock = Clock()
        self.store, self.queue = MemoryRunStore(), MemoryQueue()
        self.notifier = RecordingNotifier()
        self.service = RunService(self.store, self.queue, tools, notifier=self.notifier,
                                  clock=self.clock, config=EngineConfig(**config))  # fmt: skip
        self.deliveries = itertools.count(1)

    def start(self, doc: dict[str, Any], state: dict[str, Any] | None = None) -> str:
        graph_id = self.service.create_graph(doc)[0].graph_id
        return self.service.start_run(graph_id, state or {})[0].run_id

    def deliver(self, hop: Hop, delivery: str | None = None) -> str:
        return self.service.process_hop(hop, delivery or f"m{next(self.deliveries)}")

    def drain(self) -> None:
        self.queue.drain(self.deliver)

    def status(self, run_id: str) -> str:
        return self.store.get_run(run_id).status

    def pending(self, run_id: str) -> list[dict[str, Any]]:
        return self.service.pending_questions(self.store.get_run(run_id))


APPROVAL = {
    "entry": "plan",
    "nodes": {
        "plan": {"tool": "plan"},
        "approve": {
            "interrupt": {
                "prompt": "Approve the plan?",
                "key": "approved",
                "schema": {"type": "boolean"},
            }
        },
        "act": {"tool": "act"},
    },
    "edges": {"plan": "approve", "approve": "act", "act": "END"},
}


def test_an_interrupt_node_pauses_the_run_with_no_hop_in_flight_and_goes_on_with_the_answer():
    world = World()
    run_id = world.start(APPROVAL)
    world.drain()
    assert world.status(run_id) == "paused"
    assert not world.queue.hops
    (question,) = world.pending(run_id)
    assert (question["task"], question["prompt"], question["key"]) == (
        "approve", "Approve the plan?", "approved")  # fmt: skip
    paused_events = [e for e in world.notifier.events if e.get("status") == "paused"]
    assert paused_events and paused_events[0]["pending"][0]["task"] == "approve"
    world.service.resume_run(run_id, True)
    world.drain()
    run = world.store.get_run(run_id)
    assert (run.status, run.state["approved"], run.state["acted"]) == ("completed", True, True)
    assert calls == ["plan", "act"]


def test_a_resume_is_answered_exactly_once() -> None:
    world = World()
    run_id = world.start(APPROVAL)
    world.drain()
    with pytest.raises(InvalidInputError, match="not of type 'boolean'"):
        world.service.resume_run(run_id, "yes")
    assert world.status(run_id) == "paused"  # a refused value changes nothing
    world.service.resume_run(run_id, False)
    assert world.service.resume_run(run_id, False).status == "running"  # the same again
    with pytest.raises(ConflictError, match="another value"):
        world.service.resume_run(run_id, True)
    assert len(world.queue.hops) == 1  # one hop for the answered task, however often it was sent
    world.drain()
    assert world.store.get_run(run_id).state["acted"] is False
    with pytest.raises(ConflictError, match="another value"):  # the run went on since
        world.service.resume_run(run_id, True)
    question = "1/interrupt/approve"  # its id names it however far the run went on
    assert world.service.resume_run(run_id, False, question=question).status == "completed"
    with pytest.raises(ConflictError, match="never asked"):
        world.service.resume_run(run_id, False, question="7/interrupt/approve")
    with pytest.raises(InvalidInputError, match="no question id"):
        world.service.resume_run(run_id, False, question="approve")


def test_the_answered_task_commits_once_however_many_hops_carry_it() -> None:
    world = World()
    run_id = world.start(APPROVAL)
    world.drain()
    world.service.resume_run(run_id, True)
    (hop,) = world.queue.hops
    assert world.deliver(hop) == "committed"
    assert world.deliver(hop) in ("duplicate", "stale")
    world.drain()
    assert [s.node for s in world.store.list_steps(run_id).items] == ["plan", "approve", "act"]


def test_a_tool_that_asks_keeps_its_updates_and_does_not_run_again() -> None:
    world = World()
    doc = {"entry": "ask", "nodes": {"ask": {"tool": "ask_name"}, "act": {"tool": "act"}},
           "edges": {"ask": "act", "act": "END"}}  # fmt: skip
    run_id = world.start(doc)
    world.drain()
    assert world.status(run_id) == "paused"
    assert world.pending(run_id)[0]["schema"] == {"type": "string"}
    world.service.resume_run(run_id, "Ann")
    world.drain()
    run = world.store.get_run(run_id)
    assert (run.status, run.state["asked"], run.state["name"]) == ("completed", True, "Ann")
    assert calls == ["ask", "act"]  # the asking tool ran once


def test_breakpoints_pause_before_and_after_a_node_and_take_no_value() -> None:
    world = World()
    doc = {**APPROVAL, "nodes": {"plan": {"tool": "plan"}, "act": {"tool": "act"}},
           "edges": {"plan": "act", "act": "END"},
           "interrupt_before": ["act"], "interrupt_after": ["plan"]}  # fmt: skip
    run_id = world.start(doc)
    world.drain()
    assert [q["kind"] for q in world.pending(run_id)] == ["after"]
    assert calls == ["plan"] and world.store.get_run(run_id).steps == 0  # held, not committed
    with pytest.raises(InvalidInputError, match="takes no value"):
        world.service.resume_run(run_id, "go")
    world.service.resume_run(run_id)
    world.drain()
    assert [q["kind"] for q in world.pending(run_id)] == ["before"]
    assert calls == ["plan"]  # act has not run yet
    world.service.resume_run(run_id)
    world.drain()
    run = world.store.get_run(run_id)
    assert (run.status, run.state["plan"]) == ("completed", "ship it")
    assert calls == ["plan", "act"]


PARALLEL = {
    "entry": "plan",
    "nodes": {
        "plan": {"tool": "plan"},
        "legal": {"interrupt": {"prompt": "Legal?", "key": "legal"}},
        "money": {"interrupt": {"prompt": "Budget?", "key": "money"}},
        "act": {"tool": "act"},
    },
    "edges": {"plan": ["legal", "money"], "act": "END"},
    "joins": {"act": ["legal", "money"]},
}


def test_parallel_branches_pause_independently_and_each_is_answered_by_its_task() -> None:
    world = World()
    run_id = world.start(PARALLEL)
    world.drain()
    assert world.status(run_id) == "paused"
    assert sorted(q["task"] for q in world.pending(run_id)) == ["legal", "money"]
    with pytest.raises(InvalidInputError, match="say which"):
        world.service.resume_run(run_id, "ok")
    world.service.resume_run(run_id, "ok", task="legal")
    world.drain()
    assert world.status(run_id) == "paused"  # one question still waits
    assert [q["task"] for q in world.pending(run_id)] == ["money"]
    world.service.resume_run(run_id, 100, task="money")
    world.drain()
    run = world.store.get_run(run_id)
    assert (run.status, run.state["legal"], run.state["money"]) == ("completed", "ok", 100)


TIMED = {
    "entry": "approve",
    "nodes": {
        "approve": {
            "interrupt": {
                "prompt": "Approve?",
                "key": "approved",
                "timeout_s": 3600,
                "on_timeout": "escalate",
            }
        },
        "act": {"tool": "act"},
        "escalate": {"tool": "escalate"},
    },
    "edges": {"approve": "act", "act": "END", "escalate": "END"},
}


def test_a_deadline_routes_to_on_timeout_through_a_held_hop() -> None:
    world = World()
    run_id = world.start(TIMED)
    # the hop pauses, and one hop is held for the deadline (900 s at most; this queue does
    # not hold hops, so each is delivered here when its time has come)
    assert world.deliver(world.queue.hops.popleft()) == "waiting"
    (held,) = world.queue.hops
    assert (held.delay_s, world.status(run_id)) == (900, "paused")
    world.clock.now += 900
    assert world.deliver(world.queue.hops.popleft()) == "waiting"  # early: held again
    (again,) = world.queue.hops
    assert again.delay_s == 900
    world.clock.now += 2700
    world.drain()
    run = world.store.get_run(run_id)
    assert (run.status, run.state.get("escalated")) == ("completed", True)
    with pytest.raises(ConflictError):
        world.service.resume_run(run_id, True)


def test_an_answer_that_comes_after_the_deadline_passed_is_refused() -> None:
    world = World()
    nodes = {"approve": {"interrupt": {"prompt": "Approve?", "timeout_s": 60}},
             "act": {"tool": "act"}}  # fmt: skip
    run_id = world.start({"entry": "approve", "nodes": nodes,
                          "edges": {"approve": "act", "act": "END"}})  # fmt: skip
    assert world.deliver(world.queue.hops.popleft()) == "waiting"
    world.clock.now += 61
    world.drain()  # the held hop answers it as timed out: no on_timeout, so the run fails
    run = world.store.get_run(run_id)
    assert run.status == "failed" and "in time" in (run.error or "")


def test_a_paused_run_can_be_cancelled_and_then_takes_no_answer() -> None:
    world = World()
    run_id = world.start(APPROVAL)
    world.drain()
    assert world.service.cancel_run(run_id).status == "cancelled"
    with pytest.raises(ConflictError):
        world.service.resume_run(run_id, True)
    world.drain()
    assert world.status(run_id) == "cancelled" and calls == ["plan"]


def test_the_sweeper_leaves_a_paused_run_alone_however_long_it_waits() -> None:
    world = World(lease_s=60)
    run_id = world.start(APPROVAL)
    world.drain()
    world.clock.now += 86_400
    assert world.service.sweep() == {}
    assert not world.queue.hops and world.status(run_id) == "paused"


def test_with_self_invocation_the_sweeper_sends_a_deadline_that_passed() -> None:
    world = World(lease_s=60, sweeper_delays=True)
    run_id = world.start(TIMED)
    world.drain()
    assert not world.queue.hops  # no hop can be held: the sweeper keeps the deadline
    world.clock.now += 3599
    assert world.service.sweep() == {}
    world.clock.now += 2
    assert world.service.sweep() == {run_id: 1}
    world.drain()
    assert world.store.get_run(run_id).state.get("escalated") is True


def test_a_crash_after_the_pause_commit_is_recovered_by_the_redelivery() -> None:
    world = World()
    run_id = world.start(PARALLEL)
    assert world.deliver(world.queue.hops.popleft()) == "committed"  # plan
    legal, money = sorted(world.queue.hops, key=lambda h: h.node)
    world.queue.hops.clear()
    assert world.deliver(money, "d-money") == "waiting"
    assert world.status(run_id) == "running"  # legal has not asked yet
    # legal's pause is written, and its worker dies before it holds the run
    record = PauseRecord(run_id, 1, "legal", None, "interrupt", world.clock(), "Legal?",
                         "legal", held={"parallel": True}, committed_by="d-legal")  # fmt: skip
    world.store.commit_pause(record, hold=False)
    assert world.status(run_id) == "running"
    # its redelivery finds its pause, runs nothing, and holds the run
    assert world.service.process_hop(legal, "d-legal", attempt=2) == "waiting"
    assert world.status(run_id) == "paused" and len(world.pending(run_id)) == 2
    # and with no redelivery at all, the sweeper's look at the stalled slot does the same
    assert not world.queue.hops


def test_a_lost_pause_hold_is_made_by_the_sweeper() -> None:
    world = World(lease_s=60)
    run_id = world.start(PARALLEL)
    world.deliver(world.queue.hops.popleft())
    world.queue.hops.clear()  # both branch hops are lost after their pauses were written
    for node in ("legal", "money"):
        record = PauseRecord(run_id, 1, node, None, "interrupt", world.clock(), "?", node,
                             held={"parallel": True})  # fmt: skip
        world.store.commit_pause(record, hold=False)
    world.clock.now += 61
    assert world.service.sweep() == {run_id: 2}
    world.drain()
    assert world.status(run_id) == "paused"


def test_the_declarations_are_checked_with_their_locations() -> None:
    world = World()
    bad = {"entry": "a", "nodes": {
        "a": {"interrupt": {"prompt": "", "schema": {"type": "nope"}, "on_timeout": "z",
                            "timeout_s": 5, "colour": 1}, "tool": "plan"},
        "b": {"tool": "act"}}, "edges": {"a": "b", "b": "END"},
        "interrupt_after": ["c"]}  # fmt: skip
    with pytest.raises(GraphValidationError) as caught:
        world.service.create_graph(bad)
    where = {p.location for p in caught.value.problems}
    assert {"nodes.a.interrupt.colour", "nodes.a.interrupt.prompt", "nodes.a.interrupt.schema",
            "nodes.a.tool", "interrupt_after"} <= where  # fmt: skip


def test_a_paused_runs_state_can_be_edited_and_the_question_is_asked_again() -> None:
    from engine import history

    world = World()
    run_id = world.start(APPROVAL)
    world.drain()
    edited = history.edit_state(world.service, run_id, {"plan": "ship it on Monday"})
    assert edited.status == "running"
    world.drain()  # the superstep it waited in starts again: the question is asked again
    assert world.status(run_id) == "paused"
    assert [q["task"] for q in world.pending(run_id)] == ["approve"]
    world.service.resume_run(run_id, True)
    world.drain()
    run = world.store.get_run(run_id)
    assert (run.status, run.state["plan"], run.state["acted"]) == (
        "completed",
        "ship it on Monday",
        True,
    )
    assert [s.source or s.node for s in world.store.list_steps(run_id).items] == [
        "plan", "edit", "approve", "act"]  # fmt: skip


def test_a_run_of_its_own_breakpoints_pauses_there_and_others_do_not() -> None:
    from engine.interrupt_spec import Breakpoints

    world = World()
    doc = {"entry": "plan", "nodes": {"plan": {"tool": "plan"}, "act": {"tool": "act"}},
           "edges": {"plan": "act", "act": "END"}}  # fmt: skip
    graph_id = world.service.create_graph(doc)[0].graph_id
    stops = Breakpoints(before=frozenset({"act"}))
    held = world.service.start_run(graph_id, {}, breakpoints=stops)[0].run_id
    plain = world.service.start_run(graph_id, {})[0].run_id
    world.drain()
    assert (world.status(held), world.status(plain)) == ("paused", "completed")
    assert [q["kind"] for q in world.pending(held)] == ["before"]
    world.service.resume_run(held)
    world.drain()
    assert world.status(held) == "completed" and calls.count("act") == 2
    with pytest.raises(InvalidInputError, match="no node 'nope'"):
        world.service.start_run(graph_id, {}, breakpoints=Breakpoints(after=frozenset({"nope"})))
