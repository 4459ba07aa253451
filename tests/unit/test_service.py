"""The run service over the in-memory adapters: graphs, runs, and the exactly-once step protocol.

Hops are delivered by hand (``deliver``) or by draining the queue, each message with its own
delivery id as SQS gives; crashes are injected with a queue that fails its next dispatch.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from engine.errors import (
    ConflictError,
    GraphNotFound,
    GraphValidationError,
    IdempotencyConflict,
    InvalidInputError,
    RetryLater,
    RunNotFound,
    StateTooLargeError,
)
from engine.memory import MemoryQueue, MemoryRunStore, RecordingNotifier
from engine.ports import Hop, RunRecord
from engine.runner import InProcessRunner
from engine.service import EngineConfig, HopResult, RunService
from engine.tools import ToolContext, Toolkit
from engine.validation import MAX_STEPS_CEILING

# -- tools, with a call counter: tools run at least once, steps commit exactly once -------------
tools = Toolkit("service-tests")
calls: list[tuple[str, int]] = []


@tools.tool
def count(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    calls.append((ctx.run_id, ctx.step))
    return {"n": state.get("n", 0) + 1}


@tools.tool
def stamp(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    calls.append((ctx.run_id, ctx.step))
    return {"stamps": [*state.get("stamps", []), ctx.idempotency_key]}


@tools.tool
def explode(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    raise RuntimeError("kaboom")


LOOP = {
    "name": "loop",
    "entry": "count",
    "nodes": {"count": {"tool": "count"}, "stamp": {"tool": "stamp"}},
    "edges": {"count": "stamp"},
    "branches": {"stamp": {"cases": [{"when": "n >= 3", "to": "END"}], "default": "count"}},
}
FAILING = {
    "entry": "count",
    "nodes": {"count": {"tool": "count"}, "boom": {"tool": "explode"}},
    "edges": {"count": "boom", "boom": "END"},
}
ENDLESS = {
    "entry": "count",
    "max_steps": 5,
    "nodes": {"count": {"tool": "count"}},
    "branches": {"count": {"cases": [{"when": "n < 0", "to": "END"}], "default": "count"}},
}


class CountingIds:
    """Predictable ids; a run started with a key gets an id derived from it, as RandomIds."""

    def __init__(self) -> None:
        self._next = itertools.count(1)

    def graph_id(self) -> str:
        return f"g_{next(self._next)}"

    def run_id(self, graph_id: str, idempotency_key: str | None) -> str:
        if idempotency_key is None:
            return f"r_{next(self._next)}"
        return f"r_{graph_id}_{idempotency_key}"


class FlakyQueue(MemoryQueue):
    """A queue whose next dispatch fails once: the worker crashes after its commit."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_next = False

    def dispatch(self, hop: Hop) -> None:
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("queue unreachable")
        super().dispatch(hop)


class TickingClock:
    """A second passes at every reading; :meth:`later` jumps ahead."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1
        return self.now

    def later(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class World:
    service: RunService
    store: MemoryRunStore
    queue: FlakyQueue
    notifier: RecordingNotifier
    clock: TickingClock
    deliveries: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def graph(self, doc: dict[str, Any]) -> str:
        record, _ = self.service.create_graph(doc)
        return record.graph_id

    def pop(self) -> Hop:
        return self.queue.hops.popleft()

    def deliver(self, hop: Hop, delivery_id: str | None = None, attempt: int = 1) -> HopResult:
        return self.service.process_hop(hop, delivery_id or f"m{next(self.deliveries)}", attempt)

    def drain(self) -> list[HopResult]:
        results: list[HopResult] = []
        self.queue.drain(lambda hop: results.append(self.deliver(hop)))
        return results

    def run(self, run_id: str) -> RunRecord:
        return self.store.get_run(run_id)


def make_world(**config: Any) -> World:
    calls.clear()
    clock = TickingClock()
    store, queue, notifier = MemoryRunStore(), FlakyQueue(), RecordingNotifier()
    service = RunService(
        store,
        queue,
        tools,
        notifier=notifier,
        clock=clock,
        ids=CountingIds(),
        config=EngineConfig(**config),
    )
    return World(service, store, queue, notifier, clock)


@pytest.fixture
def world() -> World:
    return make_world()


def comparable(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A log entry without what depends on timing or delivery."""
    skipped = ("started_at", "duration_ms", "attempt", "task")
    return {k: v for k, v in entry.items() if k not in skipped}


def assert_same_as_in_process(world: World, run_id: str, doc: dict[str, Any], given: Any) -> None:
    """The distributed run ended exactly as the reference runner ends the same graph."""
    graph = world.service.graph(world.run(run_id).graph_id)
    reference = InProcessRunner(tools, store=MemoryRunStore()).run(graph, given, run_id=run_id)
    run = world.run(run_id)
    assert (run.status, run.state, run.steps, run.error) == (
        reference.status,
        reference.state,
        reference.steps,
        reference.error,
    )
    log = [s.log_entry() for s in world.store.list_steps(run_id).items]
    assert [comparable(e) for e in log] == [comparable(e) for e in reference.log]


# -- graphs --------------------------------------------------------------------------------------
def test_create_graph_saves_the_canonical_form(world: World) -> None:
    dialect1 = {
        "name": "tiny",
        "start_node": "a",
        "nodes": {"a": {"tool": "count", "next": "end"}},
    }
    record, graph = world.service.create_graph(dialect1, owner="alice")
    assert record.graph_id == "g_1" and record.owner == "alice" and record.name == "tiny"
    assert (
        record.definition
        == graph.to_dict()
        == {
            "name": "tiny",
            "entry": "a",
            "nodes": {"a": {"tool": "count"}},
            "edges": {"a": "END"},
            "branches": {},
        }
    )
    assert world.store.get_graph("g_1") == record
    assert world.service.graph("g_1") == graph


def test_a_graph_is_rebuilt_from_the_store_by_another_service(world: World) -> None:
    graph_id = world.graph(LOOP)
    other = RunService(world.store, MemoryQueue(), tools)
    assert other.graph(graph_id) == world.service.graph(graph_id)
    with pytest.raises(GraphNotFound):
        other.graph("g_nope")


def test_create_graph_raises_every_validation_problem(world: World) -> None:
    doc = {
        "entry": "a",
        "nodes": {"a": {"tool": "cuont"}, "b": {"tool": "count"}},
        "edges": {"a": "END"},
    }
    with pytest.raises(GraphValidationError) as caught:
        world.service.create_graph(doc)
    assert [(p.location, p.message) for p in caught.value.problems] == [
        ("nodes.a.tool", "unknown tool 'cuont' (did you mean 'count'?)"),
        ("nodes.b", "node 'b' has no way out: add an edge (to END to finish)"),
        ("nodes.b", "node 'b' is unreachable from the entry 'a'"),
    ]
    assert world.store.list_graphs().items == []


# -- starting runs -------------------------------------------------------------------------------
def test_start_run_creates_the_run_and_dispatches_its_first_hop(world: World) -> None:
    graph_id = world.graph(LOOP)
    run, created = world.service.start_run(graph_id, {"n": 0}, owner="bob")
    assert created
    assert (run.status, run.node, run.steps, run.state, run.owner) == (
        "running",
        "count",
        0,
        {"n": 0},
        "bob",
    )
    assert run.max_steps == EngineConfig().default_max_steps
    assert list(world.queue.hops) == [Hop(run.run_id, graph_id, 0, "count")]
    assert world.notifier.events == [
        {
            "type": "run",
            "run_id": run.run_id,
            "ts": world.notifier.events[0]["ts"],
            "status": "running",
            "steps": 0,
        }
    ]


def test_start_run_on_an_unknown_graph(world: World) -> None:
    with pytest.raises(GraphNotFound):
        world.service.start_run("g_missing", {})


def test_the_same_idempotency_key_gives_the_same_run(world: World) -> None:
    graph_id = world.graph(LOOP)
    # Given a run started with a key
    first, created = world.service.start_run(graph_id, {"n": 0}, idempotency_key="k1")
    assert created and first.idempotency_key == "k1"
    # When it is started again, with the same request, before its first step committed
    again, created_again = world.service.start_run(graph_id, {"n": 0}, idempotency_key="k1")
    # Then it is the same run, and its first hop is dispatched again, marked for a recheck
    assert not created_again and again.run_id == first.run_id and again.input == {"n": 0}
    hops = list(world.queue.hops)
    assert [(h.run_id, h.seq, h.recheck) for h in hops] == [
        (first.run_id, 0, False),
        (first.run_id, 0, True),
    ]
    assert [e["status"] for e in world.notifier.events] == ["running"]  # announced once
    # When both hops are delivered, step 0 commits once
    assert world.deliver(world.pop()) == "committed"
    assert world.deliver(world.pop()) == "duplicate"
    assert calls == [(first.run_id, 0)]  # the rechecked duplicate did not run the tool
    # And once a step is committed, starting again dispatches nothing
    world.queue.hops.clear()
    assert world.service.start_run(graph_id, {"n": 0}, idempotency_key="k1")[1] is False
    assert not world.queue.hops
    # But the key with another input or step limit is refused, naming the run and the field
    with pytest.raises(IdempotencyConflict) as conflict:
        world.service.start_run(graph_id, {"n": 99}, idempotency_key="k1", max_steps=3)
    assert (conflict.value.run_id, conflict.value.differs) == (first.run_id, ["input", "max_steps"])
    assert not world.queue.hops
    # And another key is another run
    other, created_other = world.service.start_run(graph_id, {"n": 0}, idempotency_key="k2")
    assert created_other and other.run_id != first.run_id


@pytest.mark.parametrize("given", [[1, 2], "text", 3, True])
def test_input_must_be_an_object(world: World, given: Any) -> None:
    graph_id = world.graph(LOOP)
    with pytest.raises(InvalidInputError, match="input must be a JSON object"):
        world.service.start_run(graph_id, given)
    assert world.store.list_runs().items == [] and not world.queue.hops


def test_no_input_is_an_empty_state(world: World) -> None:
    run, _ = world.service.start_run(world.graph(LOOP), None)
    assert run.input == {}


def test_an_input_above_the_state_limit_is_refused() -> None:
    world = make_world(state_limit_bytes=100)
    graph_id = world.graph(LOOP)
    with pytest.raises(StateTooLargeError) as caught:
        world.service.start_run(graph_id, {"blob": "x" * 200})
    assert caught.value.limit == 100 and caught.value.size > 200
    assert world.store.list_runs().items == [] and not world.queue.hops


@pytest.mark.parametrize("max_steps", [0, -3, MAX_STEPS_CEILING + 1, "10", 2.5, True, False])
def test_a_bad_max_steps_is_refused(world: World, max_steps: Any) -> None:
    graph_id = world.graph(LOOP)
    with pytest.raises(
        InvalidInputError, match=f"max_steps must be an integer from 1 to {MAX_STEPS_CEILING}"
    ):
        world.service.start_run(graph_id, {}, max_steps=max_steps)
    assert world.store.list_runs().items == [] and not world.queue.hops


def test_max_steps_comes_from_the_run_else_the_graph_else_the_config() -> None:
    world = make_world(default_max_steps=42)
    plain, limited = world.graph(LOOP), world.graph(ENDLESS)
    assert world.service.start_run(plain, {})[0].max_steps == 42
    assert world.service.start_run(limited, {})[0].max_steps == 5
    assert world.service.start_run(limited, {}, max_steps=9)[0].max_steps == 9
    # And the hops carry no limit: the slot check reads it from the run's records
    assert all("max_steps" not in h.to_dict() for h in world.queue.hops)


# -- processing hops -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("doc", "given"),
    [(LOOP, {"n": 0}), (LOOP, {"n": 5, "x": [1]}), (FAILING, {}), (ENDLESS, {"n": 0})],
    ids=["loop", "loop-once", "tool-fails", "step-limit"],
)
def test_hops_drive_a_run_to_the_in_process_runners_end(
    world: World, doc: dict[str, Any], given: dict[str, Any]
) -> None:
    run, _ = world.service.start_run(world.graph(doc), given)
    results = world.drain()
    assert results[-1] == "finished" and set(results[:-1]) <= {"committed"}
    assert_same_as_in_process(world, run.run_id, doc, given)


def test_hops_carry_no_state_and_the_worker_reads_the_committed_one(world: World) -> None:
    # Given a run whose hops are sent as messages
    run, _ = world.service.start_run(world.graph(LOOP), {"n": 0})
    # Then they carry no state (nor a step limit): only what names the task
    assert set(world.queue.hops[0].to_dict()) == {"run_id", "graph_id", "seq", "node"}
    # When the run is driven, Then it ends as the reference does
    world.drain()
    assert_same_as_in_process(world, run.run_id, LOOP, {"n": 0})


def test_a_hop_before_its_predecessor_is_committed_is_dropped(world: World) -> None:
    run, _ = world.service.start_run(world.graph(LOOP), {"n": 0})
    first = world.pop()
    # Given the hop of step 1 arriving before step 0 committed: no run sends that, a
    # successor is dispatched only after its predecessor's commit
    early = replace(first, seq=1, node="stamp")
    # Then it is dropped without running the tool or writing anything
    assert world.deliver(early) == "stale"
    assert world.run(run.run_id).steps == 0 and calls == [] and not world.queue.hops
    # And the real hop of step 0 still goes through
    assert world.deliver(first) == "committed"


# -- stray and forged hops: a commit requires a live run at that slot ----------------------------
def finished_two_step_run(world: World) -> RunRecord:
    graph_id = world.graph(
        {"entry": "count", "nodes": {"count": {"tool": "count"}, "stamp": {"tool": "stamp"}},
         "edges": {"count": "stamp", "stamp": "END"}}
    )  # fmt: skip
    run, _ = world.service.start_run(graph_id, {"n": 0})
    world.drain()
    final = world.run(run.run_id)
    assert (final.status, final.steps) == ("completed", 2)
    return final


def test_a_stray_hop_for_a_finished_run_changes_nothing(world: World) -> None:
    final = finished_two_step_run(world)
    steps = world.store.list_steps(final.run_id).items
    # Given a hop for slot 5 of the completed run (forged, or left over)
    stray = Hop(final.run_id, final.graph_id, 5, "count")
    # When it is delivered, Then it is dropped: the log and the state stay as they were
    assert world.deliver(stray) == "stale"
    assert world.store.list_steps(final.run_id).items == steps
    assert world.run(final.run_id) == final and not world.queue.hops


@pytest.mark.parametrize("seq", [0, 3])
def test_a_hop_for_an_unknown_run_writes_nothing(world: World, seq: int) -> None:
    graph_id = world.graph(LOOP)
    ghost = Hop("r_ghost", graph_id, seq, "count")
    assert world.deliver(ghost) == "stale"
    with pytest.raises(RunNotFound):
        world.store.list_steps("r_ghost")
    assert world.service.fail_hop(ghost, "dead-lettered") is False
    with pytest.raises(RunNotFound):
        world.store.get_run("r_ghost")


def test_a_hop_for_a_slot_ahead_of_the_run_changes_nothing(world: World) -> None:
    run, _ = world.service.start_run(world.graph(LOOP), {"n": 0})
    world.deliver(world.pop())  # step 0 committed; the run is at slot 1
    ahead = Hop(run.run_id, run.graph_id, 4, "count")
    assert world.deliver(ahead) == "stale"
    assert world.service.fail_hop(ahead, "dead-lettered") is False
    assert [s.seq for s in world.store.list_steps(run.run_id).items] == [0]
    assert world.run(run.run_id).status == "running"


def test_a_hop_routed_elsewhere_or_of_another_graph_changes_nothing(world: World) -> None:
    run, _ = world.service.start_run(world.graph(LOOP), {"n": 0})
    world.deliver(world.pop())
    real = world.queue.hops[0]  # step 1 runs "stamp"
    other_graph = world.graph(FAILING)
    for stray in (
        replace(real, node="count"),  # a node the run was not routed to
        replace(real, graph_id=other_graph, node="boom"),  # another graph's node
        replace(real, graph_id="g_nope"),  # no such graph
        replace(real, node="nope"),  # no such node
    ):
        assert world.deliver(stray) == "stale", stray
        assert world.service.fail_hop(stray, "dead-lettered") is False
    assert world.run(run.run_id).steps == 1
    # And the real hop still commits
    assert world.deliver(world.pop()) == "committed"


def test_a_first_hop_must_be_the_entry_of_a_running_run(world: World) -> None:
    run, _ = world.service.start_run(world.graph(LOOP), {"n": 0})
    first = world.pop()
    assert world.deliver(replace(first, node="stamp")) == "stale"
    world.service.cancel_run(run.run_id)
    assert world.deliver(first) in ("stale", "duplicate")
    assert [s.status for s in world.store.list_steps(run.run_id).items] == ["cancelled"]


def test_the_notifier_sees_every_event_in_step_order(world: World) -> None:
    run, _ = world.service.start_run(world.graph(LOOP), {"n": 0})
    world.drain()
    events = world.notifier.events
    assert [e["type"] for e in events] == ["run", *["step"] * 6, "run"]
    assert [e["seq"] for e in events if e["type"] == "step"] == list(range(6))
    assert (events[0]["status"], events[-1]["status"]) == ("running", "completed")
    assert events[-1]["state"] == world.run(run.run_id).state and events[-1]["steps"] == 6


def test_the_same_delivery_twice_redispatches_its_successor_once(world: World) -> None:
    run, _ = world.service.start_run(world.graph(LOOP), {"n": 0})
    hop = world.pop()
    # Given step 0 committed by delivery m1
    assert world.deliver(hop, "m1") == "committed"
    # When the same message comes back (its acknowledgement was lost)
    assert world.deliver(hop, "m1", attempt=2) == "recovered"
    # Then the successor is in the queue twice, the copy marked for a recheck
    assert [(h.seq, h.recheck) for h in world.queue.hops] == [(1, False), (1, True)]
    # And the run still commits each step once, running each tool once
    world.drain()
    assert calls == [(run.run_id, seq) for seq in range(6)]
    assert_same_as_in_process(world, run.run_id, LOOP, {"n": 0})


def test_the_same_hop_under_two_delivery_ids_commits_once(world: World) -> None:
    run, _ = world.service.start_run(world.graph(LOOP), {"n": 0})
    hop = world.pop()
    assert world.deliver(hop, "m1") == "committed"
    # A second message with the same hop (a duplicate send) finds the slot taken at its slot
    # check and is dropped, before its tool runs
    assert world.deliver(hop, "m2") == "duplicate"
    assert calls == [(run.run_id, 0)]
    assert [h.seq for h in world.queue.hops] == [1]
    assert world.run(run.run_id).steps == 1
    world.drain()
    assert_same_as_in_process(world, run.run_id, LOOP, {"n": 0})


def test_a_crash_between_commit_and_dispatch_is_recovered_by_the_redelivery(world: World) -> None:
    run, _ = world.service.start_run(world.graph(LOOP), {"n": 0})
    world.deliver(world.pop(), "m1")
    hop = world.pop()  # step 1
    # Given a worker that commits step 1 and crashes before dispatching step 2
    world.queue.fail_next = True
    with pytest.raises(ConnectionError):
        world.deliver(hop, "m2")
    assert world.run(run.run_id).steps == 2 and not world.queue.hops
    # When the message is redelivered (same delivery id), Then step 2 is dispatched, once
    assert world.deliver(hop, "m2", attempt=2) == "recovered"
    assert [(h.seq, h.node, h.recheck) for h in world.queue.hops] == [(2, "count", True)]
    assert world.run(run.run_id).steps == 2  # nothing committed twice
    # And the run goes on to the reference's end
    world.drain()
    assert_same_as_in_process(world, run.run_id, LOOP, {"n": 0})


def test_a_recovered_redispatch_that_is_delivered_twice_still_commits_once(world: World) -> None:
    run, _ = world.service.start_run(world.graph(LOOP), {"n": 0})
    hop = world.pop()
    world.queue.fail_next = True
    with pytest.raises(ConnectionError):
        world.deliver(hop, "m1")
    world.deliver(hop, "m1", attempt=2)
    successor = world.pop()
    assert world.deliver(successor, "m7") == "committed"
    assert world.deliver(successor, "m7", attempt=2) == "recovered"
    assert world.deliver(successor, "m8") == "duplicate"
    world.drain()
    assert_same_as_in_process(world, run.run_id, LOOP, {"n": 0})


class WorkerDied(BaseException):
    """Stands for the process dying: no ``except Exception`` handler catches it."""


def test_a_crash_after_the_final_commit_still_publishes_the_end(world: World) -> None:
    run, _ = world.service.start_run(world.graph(LOOP), {"n": 0})
    while world.queue.hops[0].seq < 5:
        world.deliver(world.pop())
    last = world.pop()  # step 5, whose stamp sees n >= 3 and ends the run
    # Given a worker that commits the final step and dies before publishing it
    publish = world.notifier.publish

    def die(run_id: str, events: list[dict[str, Any]], audience: object = None) -> None:
        raise WorkerDied

    world.notifier.publish = die  # type: ignore[method-assign]
    with pytest.raises(WorkerDied):
        world.deliver(last, "m9")
    world.notifier.publish = publish  # type: ignore[method-assign]
    assert world.run(run.run_id).status == "completed"
    # When the message is redelivered, Then the final run event is published after all
    assert world.deliver(last, "m9", attempt=2) == "recovered"
    final = world.notifier.events[-1]
    assert final["type"] == "run" and final["status"] == "completed"
    assert final["state"] == world.run(run.run_id).state


def test_stale_hops_after_the_end_are_dropped(world: World) -> None:
    run, _ = world.service.start_run(world.graph(LOOP), {"n": 0})
    world.drain()
    final = world.run(run.run_id)
    calls.clear()
    # Given a hop for a step after the one that ended the run
    late = Hop(run.run_id, run.graph_id, final.steps, "count")
    # Then it is dropped: no tool call, no commit, no successor
    assert world.deliver(late) == "stale"
    assert calls == [] and not world.queue.hops and world.run(run.run_id) == final


def test_a_hop_of_a_finished_step_is_a_duplicate(world: World) -> None:
    run, _ = world.service.start_run(world.graph(LOOP), {"n": 0})
    first = world.queue.hops[0]
    world.drain()
    final = world.run(run.run_id)
    assert world.deliver(replace(first, recheck=True)) == "duplicate"
    assert world.deliver(first) == "duplicate"  # its slot is another delivery's
    assert not world.queue.hops and world.run(run.run_id) == final


# -- cancelling and dead letters -----------------------------------------------------------------
def test_a_cancelled_run_commits_nothing_more(world: World) -> None:
    run, _ = world.service.start_run(world.graph(LOOP), {"n": 0})
    world.deliver(world.pop())
    pending = world.pop()  # the hop of step 1, in flight
    # When the run is cancelled
    cancelled = world.service.cancel_run(run.run_id, "user asked")
    # Then it is final, with its state so far, and subscribers are told
    assert (cancelled.status, cancelled.error, cancelled.state, cancelled.node) == (
        "cancelled",
        "user asked",
        {"n": 1},
        None,
    )
    assert world.notifier.events[-1]["status"] == "cancelled"
    assert world.notifier.events[-1]["reason"] == "user asked"
    # And the hop in flight commits nothing and dispatches nothing
    steps_before = world.store.list_steps(run.run_id).items
    assert world.deliver(pending) in ("duplicate", "stale")
    assert world.store.list_steps(run.run_id).items == steps_before
    assert [s.status for s in steps_before] == ["ok", "cancelled"]
    assert not world.queue.hops and world.run(run.run_id).status == "cancelled"


def test_cancelling_a_final_run_is_a_conflict(world: World) -> None:
    run, _ = world.service.start_run(world.graph(LOOP), {"n": 0})
    world.drain()
    with pytest.raises(ConflictError, match="already completed"):
        world.service.cancel_run(run.run_id)
    other, _ = world.service.start_run(world.graph(LOOP), {})
    world.service.cancel_run(other.run_id)
    with pytest.raises(ConflictError, match="already cancelled"):
        world.service.cancel_run(other.run_id)
    with pytest.raises(RunNotFound):
        world.service.cancel_run("r_nope")


def test_fail_hop_marks_the_run_failed(world: World) -> None:
    run, _ = world.service.start_run(world.graph(LOOP), {"n": 0})
    world.deliver(world.pop())
    dead = world.pop()
    # Given a letter for the hop of step 1 while it may still run (its slot opened just now)
    with pytest.raises(RetryLater):  # looked at again later, when its task cannot run
        world.service.fail_hop(dead, "forged, or early")
    assert world.run(run.run_id).status == "running"
    # When the hop of step 1 is dead-lettered once the lease has passed
    world.clock.later(EngineConfig().lease_s)
    assert world.service.fail_hop(dead, "hop dead-lettered after 5 receives") is True
    # Then the run is failed with that reason, its state kept, and subscribers know
    failed = world.run(run.run_id)
    assert (failed.status, failed.error, failed.state, failed.steps) == (
        "failed",
        "hop dead-lettered after 5 receives",
        {"n": 1},
        2,
    )
    step = world.store.get_step(run.run_id, 1)
    assert step is not None and (step.status, step.node, step.tool) == ("failed", "stamp", "stamp")
    assert [e["type"] for e in world.notifier.events[-2:]] == ["step", "run"]
    assert world.notifier.events[-1]["reason"] == "hop dead-lettered after 5 receives"
    # And doing it again, or delivering the hop, changes nothing
    assert world.service.fail_hop(dead, "again") is False
    assert world.deliver(dead) == "duplicate"
    assert world.run(run.run_id) == failed


def test_fail_hop_after_the_step_committed_does_nothing(world: World) -> None:
    run, _ = world.service.start_run(world.graph(LOOP), {"n": 0})
    hop = world.pop()
    world.deliver(hop)
    assert world.service.fail_hop(hop, "too late") is False
    assert world.run(run.run_id).status == "running"
