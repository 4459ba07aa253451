"""Time travel in process: history, forks, redrives and state edits over the memory store,
driven hop by hop through the same protocol as the worker (engine/history.py)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from engine import history
from engine.errors import ConflictError, IdempotencyConflict, InvalidInputError, NotFoundError
from engine.events import run_status_event
from engine.history import ForkRequest
from engine.lifecycle import FINAL_STATUSES, TRANSITIONS, RunEnd, check_transition, is_final
from engine.memory import MemoryQueue, MemoryRunStore, RecordingNotifier
from engine.ports import Hop, RunRecord, StepRecord
from engine.service import EngineConfig, RunService
from engine.tools import ToolContext, ToolError, Toolkit

tools = Toolkit("history-tests")
flaky_failures: list[str] = []
"""Nodes whose next call fails once (a tool error a redrive gets past)."""


@tools.tool
def note(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    if ctx.node in flaky_failures:
        flaky_failures.remove(ctx.node)
        raise ToolError(f"{ctx.node} is flaky")
    return {"trail": [f"{ctx.node}:{state.get('topic', '')}"]}


@tools.tool
def inc(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    return {"n": state.get("n", 0) + 1}


CHAIN = {
    "name": "chain",
    "entry": "a",
    "state": {"trail": {"reducer": "append"}},
    "nodes": {"a": {"tool": "note"}, "b": {"tool": "note"}, "c": {"tool": "note"}},
    "edges": {"a": "b", "b": "c", "c": "END"},
}
ROUTED = {
    "name": "routed",
    "entry": "a",
    "state": {"trail": {"reducer": "append"}},
    "nodes": {"a": {"tool": "note"}, "hot": {"tool": "note"}, "cold": {"tool": "note"}},
    "branches": {"a": {"cases": [{"when": "topic == 'fire'", "to": "hot"}], "default": "cold"}},
    "edges": {"hot": "END", "cold": "END"},
}
FANOUT = {
    "name": "fanout",
    "entry": "a",
    "state": {"trail": {"reducer": "append"}},
    "nodes": {n: {"tool": "note"} for n in "abcd"},
    "edges": {"a": ["b", "c"], "b": "d", "c": "d", "d": "END"},
}
COUNTER = {
    "name": "counter",
    "entry": "inc",
    "max_steps": 5,
    "nodes": {"inc": {"tool": "inc"}},
    "branches": {"inc": {"cases": [{"when": "n >= 6", "to": "END"}], "default": "inc"}},
}


class Ids:
    def __init__(self) -> None:
        self._next = itertools.count(1)

    def graph_id(self) -> str:
        return f"g_{next(self._next)}"

    def run_id(self, graph_id: str, idempotency_key: str | None) -> str:
        if idempotency_key is None:
            return f"r_{next(self._next)}"
        return f"r_{graph_id}_{idempotency_key}"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


class FailingQueue(MemoryQueue):
    """Its next dispatch fails: the process dies between a command's write and its hop."""

    fail_next = False

    def dispatch(self, hop: Hop) -> None:
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("queue unreachable")
        super().dispatch(hop)


@dataclass
class World:
    service: RunService
    store: MemoryRunStore
    queue: FailingQueue
    notifier: RecordingNotifier
    clock: Clock
    deliveries: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def start(self, doc: dict[str, Any], given: dict[str, Any] | None = None) -> str:
        record, _ = self.service.create_graph(doc)
        run, _ = self.service.start_run(record.graph_id, given or {})
        return run.run_id

    def drain(self) -> None:
        self.queue.drain(lambda hop: self.service.process_hop(hop, f"m{next(self.deliveries)}"))

    def run(self, run_id: str) -> RunRecord:
        return self.store.get_run(run_id)

    def steps(self, run_id: str) -> list[StepRecord]:
        return self.store.list_steps(run_id, limit=500).items

    def fork(self, run_id: str, from_seq: int, update: dict[str, Any] | None = None,
             **options: Any) -> RunRecord:  # fmt: skip
        request = ForkRequest(from_seq, update or {}, **options)
        run, _ = history.fork_run(self.service, self.run(run_id), request, "alice")
        return run


@pytest.fixture
def world() -> World:
    flaky_failures.clear()
    store, queue, notifier, clock = MemoryRunStore(), FailingQueue(), RecordingNotifier(), Clock()
    service = RunService(store, queue, tools, notifier=notifier, clock=clock, ids=Ids(),
                         config=EngineConfig(lease_s=60.0))  # fmt: skip
    return World(service, store, queue, notifier, clock)


def finished(world: World, doc: dict[str, Any], given: dict[str, Any] | None = None) -> str:
    run_id = world.start(doc, given)
    world.drain()
    return run_id


# -- the lifecycle ------------------------------------------------------------------------------
def test_redrive_is_the_one_declared_way_out_of_failed() -> None:
    assert TRANSITIONS["failed"] == frozenset({"running"})
    assert is_final("failed")
    assert frozenset({"completed", "failed", "cancelled"}) == FINAL_STATUSES
    check_transition("failed", RunEnd("running", from_status="failed"))
    with pytest.raises(ValueError):
        check_transition("completed", RunEnd("running", from_status="completed"))
    with pytest.raises(ValueError):  # the transition names where it comes from
        check_transition("failed", RunEnd("running"))


# -- history ------------------------------------------------------------------------------------
def test_history_lists_supersteps_without_states_unless_asked(world: World) -> None:
    run_id = finished(world, CHAIN, {"topic": "cats"})

    listed = history.history(world.store, run_id)
    with_states = history.history(world.store, run_id, states=True)

    assert [(e.seq, e.node, e.next) for e in listed.entries] == [
        (0, "a", "b"), (1, "b", "c"), (2, "c", "END")
    ]  # fmt: skip
    assert all(e.state is None for e in listed.entries) and listed.next_after is None
    assert [e.state["trail"] for e in with_states.entries if e.state] == [
        ["a:cats"], ["a:cats", "b:cats"], ["a:cats", "b:cats", "c:cats"]
    ]  # fmt: skip


def test_history_pages_by_seq(world: World) -> None:
    run_id = finished(world, CHAIN)

    first = history.history(world.store, run_id, limit=2)
    rest = history.history(world.store, run_id, after=first.next_after or 0, limit=2)

    assert [e.seq for e in first.entries] == [0, 1] and first.next_after == 1
    assert [e.seq for e in rest.entries] == [2] and rest.next_after is None


def test_state_after_an_uncommitted_step_is_not_found(world: World) -> None:
    run_id = finished(world, CHAIN)
    with pytest.raises(NotFoundError):
        history.state_after(world.store, run_id, 7)


# -- fork ---------------------------------------------------------------------------------------
def test_a_fork_starts_from_a_superstep_with_the_update_and_goes_on_from_there(
    world: World,
) -> None:
    # Given a finished chain a -> b -> c
    parent = finished(world, CHAIN, {"topic": "cats"})

    # When it is forked after a, with another topic
    fork = world.fork(parent, 0, {"topic": "dogs"})
    world.drain()

    # Then the fork ran b and c (never a again) on the edited state, and names its parent
    done = world.run(fork.run_id)
    assert done.status == "completed"
    assert done.state["trail"] == ["a:cats", "b:dogs", "c:dogs"]
    assert (done.parent_run_id, done.parent_seq) == (parent, 0)
    log = world.steps(fork.run_id)
    assert [(s.seq, s.node, s.source) for s in log] == [(0, "a", "fork"), (1, "b", ""),
                                                        (2, "c", "")]  # fmt: skip
    assert log[0].updates == {"topic": "dogs"}
    # and the parent is untouched
    assert world.run(parent).state["trail"] == ["a:cats", "b:cats", "c:cats"]


def test_a_fork_without_an_update_replays_from_the_checkpoint(world: World) -> None:
    parent = finished(world, CHAIN, {"topic": "cats"})

    fork = world.fork(parent, 1)
    world.drain()

    assert world.run(fork.run_id).state == world.run(parent).state
    assert [(s.node, s.source) for s in world.steps(fork.run_id)] == [("", "fork"), ("c", "")]


def test_an_update_as_a_node_routes_as_that_node_would_on_the_new_state(world: World) -> None:
    # Given a run that went cold after a
    parent = finished(world, ROUTED, {"topic": "ice"})
    assert world.run(parent).state["trail"][-1] == "cold:ice"

    # When forked after a with a topic that routes hot (the update written as a)
    fork = world.fork(parent, 0, {"topic": "fire"}, as_node="a")
    world.drain()

    # Then it goes hot: a's branch is evaluated on the updated state
    assert world.run(fork.run_id).state["trail"] == ["a:ice", "hot:fire"]


def test_an_update_to_a_superstep_of_one_node_is_written_as_that_node(world: World) -> None:
    parent = finished(world, ROUTED, {"topic": "ice"})

    fork = world.fork(parent, 0, {"topic": "fire"})
    world.drain()

    assert world.run(fork.run_id).state["trail"] == ["a:ice", "hot:fire"]


def test_an_update_to_a_superstep_of_several_nodes_must_name_one(world: World) -> None:
    parent = finished(world, FANOUT)
    assert world.steps(parent)[1].node == "b, c"

    with pytest.raises(InvalidInputError, match="as_node"):
        world.fork(parent, 1, {"topic": "x"})
    fork = world.fork(parent, 1, {"topic": "x"}, as_node="b")
    world.drain()

    assert world.run(fork.run_id).status == "completed"
    assert world.run(fork.run_id).state["trail"][-1] == "d:x"


def test_an_update_goes_through_the_reducers(world: World) -> None:
    parent = finished(world, CHAIN)

    fork = world.fork(parent, 0, {"trail": ["edited"]}, as_node="a")

    assert world.run(fork.run_id).state["trail"] == ["a:", "edited"]


def test_a_fork_of_a_fork_keeps_its_own_parent(world: World) -> None:
    root = finished(world, CHAIN, {"topic": "cats"})
    child = world.fork(root, 0, {"topic": "dogs"})
    world.drain()

    grandchild = world.fork(child.run_id, 1, {"topic": "owls"})
    world.drain()

    done = world.run(grandchild.run_id)
    assert (done.parent_run_id, done.parent_seq) == (child.run_id, 1)
    assert done.state["trail"] == ["a:cats", "b:dogs", "c:owls"]
    page = history.history(world.store, grandchild.run_id)
    assert [(e.seq, e.node, e.source) for e in page.entries] == [(0, "b", "fork"),
                                                                 (1, "c", "")]  # fmt: skip


def test_a_fork_from_a_failed_superstep_is_refused(world: World) -> None:
    flaky_failures.append("b")
    parent = finished(world, CHAIN)
    assert world.run(parent).status == "failed"

    with pytest.raises(ConflictError, match="redrive"):
        world.fork(parent, 1)
    with pytest.raises(NotFoundError):
        world.fork(parent, 5)
    with pytest.raises(InvalidInputError):
        world.fork(parent, 0, {"x": 1}, as_node="nowhere")


def test_the_same_key_forks_once_and_another_request_with_it_conflicts(world: World) -> None:
    parent = finished(world, CHAIN)

    first = world.fork(parent, 0, {"topic": "x"}, idempotency_key="k")
    again = world.fork(parent, 0, {"topic": "x"}, idempotency_key="k")

    assert first.run_id == again.run_id
    with pytest.raises(IdempotencyConflict):
        world.fork(parent, 1, {"topic": "x"}, idempotency_key="k")


def test_a_fork_that_died_before_its_first_hop_is_finished_by_its_retry(world: World) -> None:
    # Given a fork whose process died between creating the run and dispatching its hop
    parent = finished(world, CHAIN)
    world.queue.fail_next = True
    with pytest.raises(ConnectionError):
        world.fork(parent, 0, {"topic": "x"}, idempotency_key="k")
    assert not world.queue.hops
    forked_id = f"r_{parent}/fork_k"
    assert world.run(forked_id).steps == 1  # the run and its entry exist, together

    # When the client retries
    world.fork(parent, 0, {"topic": "x"}, idempotency_key="k")
    world.drain()

    # Then the fork runs once
    assert world.run(forked_id).state["trail"] == ["a:", "b:x", "c:x"]


def test_a_fork_that_died_before_its_first_hop_is_finished_by_the_sweeper(world: World) -> None:
    parent = finished(world, CHAIN)
    world.queue.fail_next = True
    with pytest.raises(ConnectionError):
        world.fork(parent, 0, {"topic": "x"})
    world.clock.now += 120  # past the lease

    swept = world.service.sweep()
    world.drain()

    assert list(swept.values()) == [1]
    forked = next(r for r in world.store.list_runs().items if r.parent_run_id == parent)
    assert world.run(forked.run_id).state["trail"] == ["a:", "b:x", "c:x"]


def test_a_forks_events_and_status_name_its_parent(world: World) -> None:
    parent = finished(world, CHAIN)

    fork = world.fork(parent, 1)

    started = [e for e in world.notifier.events if e["run_id"] == fork.run_id]
    assert started[0]["type"] == "step" and started[0]["source"] == "fork"
    assert started[1]["parent"] == {"run_id": parent, "seq": 1}
    late = run_status_event(world.run(fork.run_id), 0.0)
    assert late["parent"] == {"run_id": parent, "seq": 1}


def test_forking_past_the_end_completes_at_once(world: World) -> None:
    parent = finished(world, CHAIN)

    fork = world.fork(parent, 2, {"topic": "late"}, as_node="c")

    assert not world.queue.hops
    assert world.run(fork.run_id).status == "completed"
    assert world.run(fork.run_id).state["topic"] == "late"


# -- redrive ------------------------------------------------------------------------------------
def test_a_run_failed_by_a_tool_error_is_redriven_from_its_failed_superstep(world: World) -> None:
    # Given a run whose b failed
    flaky_failures.append("b")
    run_id = finished(world, CHAIN, {"topic": "t"})
    assert world.run(run_id).status == "failed"

    # When it is redriven
    redriven = history.redrive_run(world.service, run_id)
    assert redriven.status == "running"
    world.drain()

    # Then b ran again and the run completed; the failure stays in the log
    done = world.run(run_id)
    assert (done.status, done.error) == ("completed", None)
    assert done.state["trail"] == ["a:t", "b:t", "c:t"]
    log = world.steps(run_id)
    assert [(s.node, s.status, s.source) for s in log] == [
        ("a", "ok", ""), ("b", "failed", ""), ("", "ok", "redrive"), ("b", "ok", ""),
        ("c", "ok", ""),
    ]  # fmt: skip
    assert log[2].attempt == 2


def test_two_redrives_at_once_start_one_continuation(world: World) -> None:
    flaky_failures.append("b")
    run_id = finished(world, CHAIN)
    failed = world.run(run_id)
    store = world.store
    real_get_run = store.get_run
    # Both read the run as failed before either writes.
    store.get_run = lambda wanted: failed if wanted == run_id else real_get_run(wanted)  # type: ignore[method-assign]
    history.redrive_run(world.service, run_id)
    with pytest.raises(ConflictError, match="redriven"):
        history.redrive_run(world.service, run_id)
    store.get_run = real_get_run  # type: ignore[method-assign]

    assert len(world.queue.hops) == 1
    world.drain()
    assert world.run(run_id).status == "completed"
    assert sum(1 for s in world.steps(run_id) if s.source == "redrive") == 1


@pytest.mark.parametrize("status", ["running", "completed", "cancelled"])
def test_only_a_failed_run_is_redriven(world: World, status: str) -> None:
    run_id = world.start(CHAIN)
    if status == "completed":
        world.drain()
    if status == "cancelled":
        world.service.cancel_run(run_id)

    with pytest.raises(ConflictError, match="only a failed run"):
        history.redrive_run(world.service, run_id)


def test_a_run_stopped_by_its_step_limit_is_redriven_with_a_higher_one(world: World) -> None:
    run_id = finished(world, COUNTER)
    stopped = world.run(run_id)
    assert stopped.status == "failed" and "step limit" in (stopped.error or "")

    with pytest.raises(InvalidInputError, match="max_steps"):
        history.redrive_run(world.service, run_id)
    history.redrive_run(world.service, run_id, max_steps=12)
    world.drain()

    done = world.run(run_id)
    assert (done.status, done.state["n"], done.max_steps) == ("completed", 6, 12)


def test_a_dead_lettered_hop_is_redriven(world: World) -> None:
    # Given a run whose hop for b was given up on
    run_id = world.start(CHAIN)
    world.service.process_hop(world.queue.hops.popleft(), "m1")
    hop = world.queue.hops.popleft()
    assert world.service.fail_hop(hop, "b was dead-lettered", by_worker=True)

    # When it is redriven, then b runs and the run completes
    history.redrive_run(world.service, run_id)
    world.drain()
    assert world.run(run_id).status == "completed"
    assert [s.node for s in world.steps(run_id)] == ["a", "b", "", "b", "c"]


def test_a_redrive_that_died_before_its_hop_is_finished_by_the_sweeper(world: World) -> None:
    flaky_failures.append("b")
    run_id = finished(world, CHAIN)
    world.queue.fail_next = True
    with pytest.raises(ConnectionError):
        history.redrive_run(world.service, run_id)
    assert world.run(run_id).status == "running"
    world.clock.now += 120

    world.service.sweep()
    world.drain()

    assert world.run(run_id).status == "completed"


# -- state edits --------------------------------------------------------------------------------
@pytest.mark.parametrize("status", ["running", "completed", "failed"])
def test_only_a_paused_runs_state_is_edited(world: World, status: str) -> None:
    if status == "failed":
        flaky_failures.append("a")
    run_id = world.start(CHAIN)
    if status != "running":
        world.drain()

    with pytest.raises(ConflictError, match="only a paused run"):
        history.edit_state(world.service, run_id, {"topic": "x"})


def test_a_paused_runs_state_edit_is_an_entry_of_its_own(world: World) -> None:
    # Given a run the store holds as paused after a (set up directly: a fixture of the
    # status, which pauses bring)
    record, _ = world.service.create_graph(CHAIN)
    header = RunRecord("r_p", record.graph_id, "paused", {}, 10, 1.0, 1.0, node="a")  # type: ignore[arg-type]
    world.store.create_run(header)
    waiting = StepRecord("r_p", 0, "a", "note", "ok", {"trail": ["a:"]}, {"trail": ["a:"]},
                         "b", 1.0, 0.0, run_status="paused", graph_id=record.graph_id,  # type: ignore[arg-type]
                         max_steps=10)  # fmt: skip
    world.store.commit_step(waiting)

    # When its state is edited
    edited = history.edit_state(world.service, "r_p", {"trail": ["note"], "topic": "x"})

    # Then the edit is the next entry, through the reducers, and the run still waits for b
    entry = world.store.get_step("r_p", 1)
    assert entry is not None and entry.source == "edit"
    assert entry.state == {"trail": ["a:", "note"], "topic": "x"}
    assert entry.next_node == "b" and entry.run_status == "paused"
    assert edited.state == entry.state
