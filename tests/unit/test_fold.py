"""The close of a wide superstep as a fold over several hops (engine/fold.py), over the
in-memory adapters: the same step record as a single read, page by page; one commit per page
whatever the copies; a crash or a lost fold hop resumed; the sweeper's cheap look at a counted
superstep; and a dead letter for a task whose retry is on its way."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

import pytest

from engine import fold as fold_module
from engine import superstep
from engine.memory import MemoryQueue, MemoryRunStore, RecordingNotifier
from engine.ports import FoldRecord, Hop, StepRecord, TaskRecord
from engine.service import EngineConfig, RunService
from engine.tools import Send, ToolContext, Toolkit

tools = Toolkit("fold-tests")


@tools.tool
def grade(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    doc = state["doc"]
    if doc in state.get("bad", []):
        raise ValueError(f"cannot grade {doc}")
    out: dict[str, Any] = {"graded": [f"g{doc}"], "total": doc}
    if doc in state.get("clash", []):
        out["winner"] = doc
    return out


@tools.tool
def mark(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    return {"marked": True}


@tools.tool
def note(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    return {"graded": [f"n{state['doc']}"]}


@tools.router
def spread(state: Mapping[str, Any]) -> list[Send]:
    return [Send("note", {"doc": d}) for d in state["docs"]]


@tools.reducer
def digits(current: Any, update: Any) -> Any:
    """Order matters: the digits of the items, in the order merged."""
    return (current or 0) * 10 % 1_000_000_007 + update


MAP = {
    "entry": "split",
    "state": {"graded": {"reducer": "append"}, "total": {"reducer": "digits"}},
    "nodes": {"split": {"tool": "mark"},
              "grade": {"tool": "grade", "map": {"over": "docs", "as": "doc"}},
              "count": {"tool": "mark"},
              "done": {"tool": "mark"}},
    "edges": {"split": ["grade", "count"], "grade": "done", "count": "done", "done": "END"},
}  # fmt: skip
SENT = {
    "entry": "plan",
    "state": {"graded": {"reducer": "append"}},
    "nodes": {"plan": {"tool": "mark"}, "note": {"tool": "note"}},
    "branches": {"plan": {"router": "spread", "to": ["note"]}},
    "edges": {"note": "END"},
}  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Ids:
    def __init__(self) -> None:
        self.n = itertools.count()

    def graph_id(self) -> str:
        return f"g{next(self.n)}"

    def run_id(self, graph_id: str, idempotency_key: str | None) -> str:
        return "r1"


class World:
    def __init__(self, **config: Any) -> None:
        self.clock = Clock()
        self.store, self.queue = MemoryRunStore(), MemoryQueue()
        self.service = RunService(
            self.store, self.queue, tools, notifier=RecordingNotifier(), clock=self.clock,
            ids=Ids(), config=EngineConfig(lease_s=60, **config),
        )  # fmt: skip
        self.deliveries = itertools.count(1)

    def start(self, doc: dict[str, Any], state: dict[str, Any]) -> str:
        graph_id = self.service.create_graph(doc)[0].graph_id
        return self.service.start_run(graph_id, state)[0].run_id

    def deliver(self, hop: Hop, delivery: str | None = None) -> str:
        return self.service.process_hop(hop, delivery or f"m{next(self.deliveries)}")

    def drain(self) -> None:
        self.queue.drain(self.deliver)


FOLDED = {"fold_above": 5, "fold_page": 4}


@pytest.fixture(autouse=True)
def no_durations(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every tool takes 0 ms, so two runs of the same graph write the same step records."""
    monkeypatch.setattr(time, "perf_counter", lambda: 0.0)
    yield


def steps_of(world: World, run_id: str) -> list[StepRecord]:
    steps = world.store.list_steps(run_id, limit=1000).items
    return [replace(s, committed_by="", notified=()) for s in steps]


CASES = {
    "map of 23 with order-sensitive reducers": (MAP, {"docs": list(range(1, 24))}),
    "a write conflict found across pages": (MAP, {"docs": list(range(1, 24)), "clash": [2, 14]}),
    "a failed item after a conflict: the failure wins": (
        MAP, {"docs": list(range(1, 24)), "clash": [2, 3], "bad": [19]}),
    "120 items, some failed: summaries failed first": (
        MAP, {"docs": [d % 9 for d in range(120)], "bad": [0]}),
    "items sent to one node": (SENT, {"docs": list(range(17))}),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_a_folded_close_writes_what_a_single_read_writes(case: str) -> None:
    doc, state = CASES[case]
    # Given the same run closed by one read, and by a fold of pages of 4
    single, folded = World(), World(**FOLDED)
    for world in (single, folded):
        world.start(doc, state)
        world.drain()
    # Then every step record and the run's end are the same
    assert steps_of(folded, "r1") == steps_of(single, "r1")
    ends = [(w.store.get_run("r1").status, w.store.get_run("r1").error) for w in (single, folded)]
    assert ends[0] == ends[1]
    # And the fold did fold: one record per page but the last, which closes
    tasks = len(state["docs"]) + (1 if doc is MAP else 0)  # MAP's "count" runs beside it
    fold = folded.store.get_fold("r1", 1)
    assert fold is not None and fold.pages == -(-tasks // 4) - 1


def test_only_a_superstep_read_in_merge_order_folds() -> None:
    # A superstep that mixes two maps reads in a single read: slot order is not merge order
    plan = superstep.Plan({"a": 3, "b": 4})
    assert not fold_module.folds_in_order(plan)
    assert fold_module.folds_in_order(superstep.Plan({"a": 3, "c": None}))
    assert not fold_module.folds_in_order(superstep.Plan({"a": 3}, (Send("c", {}),)))


class Recording(MemoryRunStore):
    """Records fold commits; can die right after one, or hand one reader an older record."""

    def __init__(self) -> None:
        super().__init__()
        self.folds: list[int] = []
        self.die_after_fold = False
        self.older: FoldRecord | None = None

    def commit_fold(self, fold: FoldRecord, after: str | None) -> None:
        super().commit_fold(fold, after)
        self.folds.append(fold.pages)
        if self.die_after_fold:
            self.die_after_fold = False
            raise WorkerDied

    def get_fold(self, run_id: str, seq: int) -> FoldRecord | None:
        older, self.older = self.older, None
        return older or super().get_fold(run_id, seq)


class WorkerDied(BaseException):
    """The worker's invocation ended right after a commit."""


def recording_world() -> tuple[World, Recording]:
    world = World(**FOLDED)
    store = Recording()
    world.store = store
    world.service.store = store
    world.service.protocol.store = store
    world.service.protocol.retries.store = store
    return world, store


def to_the_fold(world: World) -> Hop:
    """Deliver every hop but the fold hops; returns the first fold hop sent."""
    while world.queue.hops:
        hop = world.queue.hops.popleft()
        if hop.fold:
            return hop
        world.deliver(hop)
    raise AssertionError("no fold hop was sent")


def test_a_duplicated_fold_hop_folds_its_page_once() -> None:
    world, store = recording_world()
    world.start(MAP, {"docs": list(range(1, 24))})
    hop = to_the_fold(world)
    read_by_both = store.get_fold("r1", 1)
    # When two copies of a fold hop read the record at the same cursor, and one commits
    assert world.deliver(hop, "f1") == "folded"
    sent = list(world.queue.hops)
    store.older = read_by_both
    # Then the other finds the cursor moved: it commits nothing and sends nothing
    assert world.deliver(hop, "f2") == "duplicate"
    assert store.folds == [1, 2] and list(world.queue.hops) == sent
    world.drain()
    done = world.store.get_run("r1")
    assert done.status == "completed" and len(done.state["graded"]) == 23


def test_a_crash_after_a_fold_commit_is_finished_by_the_redelivery() -> None:
    world, store = recording_world()
    world.start(MAP, {"docs": list(range(1, 24))})
    hop = to_the_fold(world)
    store.die_after_fold = True
    with pytest.raises(WorkerDied):
        world.deliver(hop, "f1")
    assert not world.queue.hops  # it died before sending the next fold hop
    # When the same delivery comes back, it folds on from the record
    assert world.service.process_hop(hop, "f1", 2) == "folded"
    world.drain()
    done = world.store.get_run("r1")
    assert done.status == "completed" and len(done.state["graded"]) == 23
    assert store.folds == list(range(1, 6))


def test_a_lost_fold_hop_is_resumed_by_the_sweeper_after_the_lease() -> None:
    world, store = recording_world()
    world.start(MAP, {"docs": list(range(1, 24))})
    to_the_fold(world)  # and lost
    assert world.service.sweep() == {}
    world.clock.now += 61
    assert world.service.sweep() == {"r1": 1}
    world.drain()
    done = world.store.get_run("r1")
    assert done.status == "completed" and len(done.state["graded"]) == 23
    assert store.folds == list(range(1, 6))


def test_a_closer_that_died_before_its_first_fold_is_resumed_by_the_sweeper() -> None:
    world = World(**FOLDED)
    world.start(MAP, {"docs": list(range(1, 24))})
    folds = world.service.protocol.folds
    folds.close = lambda *a, **k: "committed"  # type: ignore[method-assign]
    world.drain()
    del folds.close
    assert world.store.get_fold("r1", 1) is None and world.store.get_run("r1").steps == 1
    world.clock.now += 61
    assert world.service.sweep() == {"r1": 1}
    world.drain()
    assert world.store.get_run("r1").status == "completed"


def test_a_forged_fold_hop_changes_nothing() -> None:
    world = World(**FOLDED)
    world.start(MAP, {"docs": list(range(1, 24))})
    # No fold record yet: a fold hop for any superstep is stale
    for seq in (0, 1, 2):
        assert world.deliver(Hop("r1", "g0", seq, "grade", parallel=True, fold=True)) == "stale"
    # Another graph named, a made-up node: still read from the run's own records
    assert world.deliver(Hop("r1", "gX", 1, "nope", fold=True)) == "stale"
    world.drain()
    assert world.store.get_run("r1").status == "completed"
    # After the close, every fold hop of that superstep is stale
    assert world.deliver(Hop("r1", "g0", 1, "grade", index=3, parallel=True, fold=True)) == "stale"
    assert world.service.fail_hop(Hop("r1", "g0", 1, "grade", fold=True), "forged") is False


def test_a_forged_fold_hop_mid_fold_only_does_the_next_page_of_the_record() -> None:
    world, store = recording_world()
    world.start(MAP, {"docs": list(range(1, 24))})
    to_the_fold(world)
    # When a fold hop naming another graph and a made-up node comes while the fold runs
    forged = Hop("r1", "gX", 1, "nope", index=999, fold=True)
    assert world.deliver(forged) == "folded"
    world.drain()
    # Then it folded the page the record named, as the run's own hop would have: every page
    # once, and the run ends as without it
    done = world.store.get_run("r1")
    assert done.status == "completed" and len(done.state["graded"]) == 23
    assert store.folds == list(range(1, 6))


class Listing(MemoryRunStore):
    def __init__(self) -> None:
        super().__init__()
        self.listed = 0

    def list_tasks(self, run_id: str, seq: int) -> list[TaskRecord]:
        self.listed += 1
        return super().list_tasks(run_id, seq)


def test_the_sweeper_reads_a_moving_counted_superstep_without_listing_its_tasks() -> None:
    world = World(fold_above=5, fold_page=4, map_window=3)
    store = Listing()
    world.store = world.service.store = world.service.protocol.store = store
    world.service.protocol.retries.store = store
    world.start(MAP, {"docs": list(range(1, 24))})
    world.deliver(world.queue.hops.popleft())  # split: superstep 1 is the wide map
    for _ in range(4):
        world.deliver(world.queue.hops.popleft())
    # When the sweeper looks while tasks keep committing
    world.clock.now += 50
    world.deliver(world.queue.hops.popleft())
    world.clock.now += 50
    listed = store.listed
    assert world.service.sweep() == {}
    # Then it read the count, not the tasks; once stalled, it lists them and re-sends
    assert store.listed == listed
    world.clock.now += 61
    hops = len(world.queue.hops)
    assert world.service.sweep()["r1"] >= 1 and store.listed == listed + 1
    assert len(world.queue.hops) > hops
    world.drain()
    assert world.store.get_run("r1").status == "completed"


FLAKY = Toolkit("fold-retries")


@FLAKY.tool
def flaky(state: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    raise ConnectionError("down")


def test_a_dead_letter_for_a_task_whose_retry_is_on_its_way_fails_nothing() -> None:
    world = World()
    world.service = RunService(
        world.store, world.queue, FLAKY, notifier=RecordingNotifier(), clock=world.clock,
        ids=Ids(), config=EngineConfig(lease_s=60),
    )  # fmt: skip
    retry = {"max_attempts": 3, "initial_interval_s": 300, "jitter": False}
    doc = {"entry": "call", "nodes": {"call": {"tool": "flaky", "retry": retry}},
           "edges": {"call": "END"}}  # fmt: skip
    world.start(doc, {})
    hop = world.queue.hops.popleft()
    assert world.deliver(hop) == "retrying"
    # When attempt 1's letter comes after the lease, while attempt 2 waits for its time
    world.clock.now += 120
    assert world.service.fail_hop(hop, "dead-lettered") is False
    assert world.store.get_run("r1").status == "running"
    # Then once attempt 2 is long overdue (its time and a lease passed), the letter fails it
    world.clock.now += 300
    assert world.service.fail_hop(hop, "dead-lettered") is True
    assert world.store.get_run("r1").status == "failed"
