"""The durable protocol on supersteps of several tasks, over the in-memory adapters.

Every example graph (fan-out, join of unequal branches, map with and without a cap, a map at
the entry) is run by the run service with its hops delivered in a seeded random order, some
twice, some by workers that die after their commit; every run must end exactly as the
in-process runner ends it, every task committed once and every superstep closed once.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from engine.errors import InvalidInputError, StepConflict
from engine.memory import MemoryQueue, MemoryRunStore, RecordingNotifier
from engine.ports import Hop, StepRecord, TaskRecord
from engine.protocol import COUNTED_FAN_IN_ABOVE
from engine.runner import InProcessRunner
from engine.service import EngineConfig, RunService
from engine.toolkits.basics import toolkit as basics
from engine.tools import ToolContext, Toolkit
from engine.validation import build_graph

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((EXAMPLES / name).read_text())
    return doc


CAPPED_MAP = {
    "entry": "split",
    "state": {"graded": {"reducer": "append"}, "total": {"reducer": "add"}},
    "nodes": {
        "split": {"tool": "emit", "settings": {"key": "started", "value": True}},
        "grade": {"tool": "fill", "settings": {"key": "graded", "template": "doc $doc"},
                  "map": {"over": "docs", "as": "doc", "max_concurrency": 3}},
        "count": {"tool": "emit", "settings": {"key": "total", "value": 1}},
        "done": {"tool": "emit", "settings": {"key": "finished", "value": True}},
    },
    "edges": {"split": ["grade", "count"], "done": "END"},
    "joins": {"done": ["grade", "count"]},
}  # fmt: skip
SHAPES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "fan-out": (load("langgraph/fanout_reducer.json"), {"aggregate": []}),
    "join of unequal branches": (load("langgraph/join_unequal.json"), {"aggregate": []}),
    "map at the entry": (load("langgraph/map_reduce.json"), {"subjects": ["a", "b", "c"]}),
    "capped map of 50 joined": (CAPPED_MAP, {"docs": list(range(50))}),
    "parallel research": (load("parallel_research.json"), {"docs": ["x", "y", "z"]}),
}


class CountingStore(MemoryRunStore):
    """Counts successful commits per slot: each must happen exactly once."""

    def __init__(self) -> None:
        super().__init__()
        self.commits: Counter[tuple[str, ...]] = Counter()
        self.fan_in: Counter[str] = Counter()
        self.die_after_commit = 0.0
        self.rng = random.Random(0)

    def commit_step(self, step: StepRecord, end: Any = None) -> None:
        super().commit_step(step, end)
        self.commits[("step", step.run_id, str(step.seq))] += 1
        self._maybe_die()

    def commit_task(self, task: TaskRecord, *, counted: bool = False) -> None:
        super().commit_task(task, counted=counted)
        self.commits[("task", task.run_id, str(task.seq), task.key)] += 1
        if counted:
            self.fan_in["counted commits"] += 1
        self._maybe_die()

    def count_tasks(self, run_id: str, seq: int) -> int:
        self.fan_in["count reads"] += 1
        return super().count_tasks(run_id, seq)

    def list_tasks(self, run_id: str, seq: int) -> list[TaskRecord]:
        found = super().list_tasks(run_id, seq)
        self.fan_in["fan-in reads"] += 1
        self.fan_in["task records read"] += len(found)
        return found

    def _maybe_die(self) -> None:
        if self.rng.random() < self.die_after_commit:
            raise WorkerDied


class WorkerDied(BaseException):
    """The worker's invocation ended right after a commit (a timeout, a crash)."""


def drive(service: RunService, queue: MemoryQueue, seed: int, duplicates: float) -> int:
    """Deliver every hop until none is left: random order, some twice, redelivering (same
    delivery id, next attempt) any whose worker died. Returns how many deliveries."""
    rng = random.Random(seed)
    pending: list[tuple[Hop, str, int]] = []
    deliveries = 0
    ids = iter(range(10**9))
    while queue.hops or pending:
        while queue.hops:
            hop = queue.hops.popleft()
            delivery = f"m{next(ids)}"
            pending.append((hop, delivery, 1))
            if rng.random() < duplicates:
                pending.append((hop, f"m{next(ids)}", 1))
        hop, delivery, attempt = pending.pop(rng.randrange(len(pending)))
        deliveries += 1
        try:
            service.process_hop(hop, delivery, attempt)
        except WorkerDied:
            pending.append((hop, delivery, attempt + 1))
    return deliveries


def reference(doc: dict[str, Any], given: dict[str, Any]) -> Any:
    return InProcessRunner(basics).run(build_graph(doc, basics.names()), given)


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("fan_in", ["read", "counted"])
def test_every_task_commits_once_and_the_run_ends_as_in_process(
    shape: str, seed: int, fan_in: str
) -> None:
    # Given a parallel shape, its supersteps' fan-ins read (the default at this size) or
    # counted (as those of many readers are)
    doc, given = SHAPES[shape]
    store, queue = CountingStore(), MemoryQueue()
    store.die_after_commit = 0.15
    store.rng = random.Random(seed)
    config = EngineConfig(counted_fan_in_above=COUNTED_FAN_IN_ABOVE if fan_in == "read" else 0)
    service = RunService(store, queue, basics, notifier=RecordingNotifier(), config=config)
    run, _ = service.start_run(service.create_graph(doc)[0].graph_id, given)
    # When its hops are delivered shuffled, duplicated, and with workers dying after commits
    drive(service, queue, seed, duplicates=0.3)
    # Then it ends as the in-process runner ends it
    expected = reference(doc, given)
    final = store.get_run(run.run_id)
    assert (final.status, final.state, final.steps, final.error) == (
        expected.status, expected.state, expected.steps, expected.error,
    )  # fmt: skip
    # And every task and every superstep was committed exactly once
    assert store.commits and max(store.commits.values()) == 1
    supersteps = {int(k[2]) for k in store.commits if k[0] == "step"}
    assert supersteps == set(range(expected.steps))
    tasks = sorted((int(k[2]), k[3]) for k in store.commits if k[0] == "task")
    parallel = sorted((e["seq"], e["task"]) for e in expected.log
                      if sum(1 for f in expected.log if f["seq"] == e["seq"]) > 1)  # fmt: skip
    assert tasks == parallel
    assert bool(store.fan_in["counted commits"]) == (fan_in == "counted")


def test_the_log_names_each_task_of_a_parallel_superstep() -> None:
    doc, given = SHAPES["join of unequal branches"]
    store, queue = CountingStore(), MemoryQueue()
    service = RunService(store, queue, basics)
    run, _ = service.start_run(service.create_graph(doc)[0].graph_id, given)
    drive(service, queue, 0, duplicates=0)
    steps = store.list_steps(run.run_id).items
    assert [(s.seq, s.node) for s in steps] == [(0, "a"), (1, "b, c"), (2, "b_2"), (3, "d")]
    second = steps[1].log_entry()
    assert [t["task"] for t in second["tasks"]] == ["b", "c"]
    assert second["next"] == ["b_2"] and steps[1].joins == {"d": ["c"]}
    assert second["updates"] == {"aggregate": ["I'm A", "I'm B", "I'm C"]}


def test_a_capped_map_never_has_more_than_its_cap_in_flight() -> None:
    store, queue = CountingStore(), MemoryQueue()
    service = RunService(store, queue, basics)
    service.start_run(service.create_graph(CAPPED_MAP)[0].graph_id, {"docs": list(range(10))})
    service.process_hop(queue.hops.popleft(), "m0")  # split: fans out to grade x10 and count
    grade = [h for h in queue.hops if h.node == "grade"]
    assert sorted(h.index for h in grade) == [0, 1, 2]  # only the cap is dispatched
    first = grade[0]
    queue.hops.remove(first)
    service.process_hop(first, "m1")
    assert sorted(h.index for h in queue.hops if h.node == "grade") == [1, 2, 3]


UNCAPPED_MAP = load("langgraph/map_reduce.json") | {
    "nodes": {"generate_joke": {"tool": "fill", "map": {"over": "subjects", "as": "subject"},
                                "settings": {"key": "jokes", "template": "Joke about $subject"}}}
}  # fmt: skip


@pytest.mark.parametrize(
    ("items", "counted"), [(COUNTED_FAN_IN_ABOVE, False), (COUNTED_FAN_IN_ABOVE + 1, True)]
)
def test_a_map_with_many_readers_counts_its_tasks_instead_of_reading_them(
    items: int, counted: bool
) -> None:
    # Given an uncapped map, every item of which may be the superstep's last
    store, queue = CountingStore(), MemoryQueue()
    # (a window as wide as the map: every item is in flight at once, and may close)
    service = RunService(store, queue, basics, config=EngineConfig(map_window=10_000))
    subjects = [f"s{i}" for i in range(items)]
    run, _ = service.start_run(service.create_graph(UNCAPPED_MAP)[0].graph_id,
                               {"subjects": subjects})  # fmt: skip
    # When its items are applied one after another
    drive(service, queue, 0, duplicates=0)
    # Then it ends as in process, and only above the threshold do its tasks count their
    # commits, each reading one count and only the last reading every task (n, not n * n / 2)
    expected = reference(UNCAPPED_MAP, {"subjects": subjects})
    assert store.get_run(run.run_id).state == expected.state
    if counted:
        assert store.fan_in == {"counted commits": items, "count reads": items,
                                "fan-in reads": 1, "task records read": items}  # fmt: skip
    else:
        assert store.fan_in == {"fan-in reads": items,
                                "task records read": items * (items + 1) // 2}  # fmt: skip


def test_the_hops_of_a_superstep_of_several_tasks_carry_no_state() -> None:
    # Given a capped map joined with a branch, over a list held in the state
    store, queue = CountingStore(), MemoryQueue()
    service = RunService(store, queue, basics)
    service.start_run(service.create_graph(CAPPED_MAP)[0].graph_id, {"docs": list(range(10))})
    first = queue.hops.popleft()
    # When the one task of superstep 0 fans out, and a map item starts the next one
    service.process_hop(first, "m0")
    fanned = list(queue.hops)
    item = next(h for h in fanned if h.node == "grade")
    queue.hops.clear()
    service.process_hop(item, "m1")
    # Then no hop carries a state: each task reads the state before its superstep with its
    # slot check (a map's n hops would carry it n times, and n * n items when the state holds
    # the list it maps over)
    assert all("state" not in h.to_dict() for h in [first, *fanned, *queue.hops])
    assert len(fanned) == 4 and [h.index for h in queue.hops] == [3]


def test_a_stray_task_hop_changes_nothing() -> None:
    store, queue = CountingStore(), MemoryQueue()
    service = RunService(store, queue, basics)
    doc, given = SHAPES["fan-out"]
    run, _ = service.start_run(service.create_graph(doc)[0].graph_id, given)
    service.process_hop(queue.hops.popleft(), "m0")
    real = queue.hops[0]
    for stray in (
        replace(real, parallel=False),  # claims a superstep of one task
        replace(real, node="d"),  # a node not planned there
        replace(real, seq=5),  # a superstep the run is not at
        replace(real, index=0),  # a map item of a node that is not a map
    ):
        assert service.process_hop(stray, "x") == "stale", stray
        assert service.fail_hop(stray, "dead-lettered") is False
    assert store.list_tasks(run.run_id, 1) == []


def test_a_task_that_fails_fails_the_run_when_its_superstep_closes() -> None:
    doc = {
        "entry": "a",
        "state": {"out": {"reducer": "append"}},
        "nodes": {"a": {"tool": "emit", "settings": {"key": "out", "value": 1}},
                  "b": {"tool": "wait", "settings": {"ms": -1}},
                  "c": {"tool": "emit", "settings": {"key": "out", "value": 2}}},
        "edges": {"a": ["b", "c"], "b": "END", "c": "END"},
    }  # fmt: skip
    store, queue = CountingStore(), MemoryQueue()
    service = RunService(store, queue, basics)
    run, _ = service.start_run(service.create_graph(doc)[0].graph_id, {})
    drive(service, queue, 1, duplicates=0)
    final = store.get_run(run.run_id)
    expected = reference(doc, {})
    assert (final.status, final.error, final.state) == ("failed", expected.error, expected.state)
    assert final.error is not None and final.error.startswith("task 'b':")


def test_cancelling_mid_superstep_stops_the_close() -> None:
    doc, given = SHAPES["fan-out"]
    store, queue = CountingStore(), MemoryQueue()
    service = RunService(store, queue, basics)
    run, _ = service.start_run(service.create_graph(doc)[0].graph_id, given)
    service.process_hop(queue.hops.popleft(), "m0")
    b, c = queue.hops.popleft(), queue.hops.popleft()
    service.process_hop(b, "m1")  # one task of superstep 1 committed
    service.cancel_run(run.run_id, "stop")
    assert service.process_hop(c, "m2") in ("committed", "duplicate", "stale")
    assert not queue.hops
    final = store.get_run(run.run_id)
    assert final.status == "cancelled"
    assert [s.status for s in store.list_steps(run.run_id).items] == ["ok", "cancelled"]


def test_a_task_running_when_the_cancel_answers_may_finish_but_nothing_goes_on() -> None:
    # Given a superstep of two tasks, one committed; the other's tool runs when the cancel
    # answers (its slot check found the slot open just before)
    tools = Toolkit("cancel race")
    services: list[RunService] = []

    @tools.tool
    def ok(state: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        return {"done": [ctx.node]}

    @tools.tool
    def cancelled_meanwhile(state: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        services[0].cancel_run(ctx.run_id, "stop")
        return {"done": [ctx.node]}

    doc = {"entry": "a", "state": {"done": {"reducer": "append"}},
           "nodes": {"a": {"tool": "ok"}, "b": {"tool": "ok"},
                     "c": {"tool": "cancelled_meanwhile"}, "d": {"tool": "ok"}},
           "edges": {"a": ["b", "c"], "b": "d", "c": "d", "d": "END"}}  # fmt: skip
    store, queue = CountingStore(), MemoryQueue()
    services.append(RunService(store, queue, tools))
    service = services[0]
    run, _ = service.start_run(service.create_graph(doc)[0].graph_id, {"done": []})
    service.process_hop(queue.hops.popleft(), "m0")
    b, c = queue.hops.popleft(), queue.hops.popleft()
    assert service.process_hop(b, "m1") == "committed"
    # When the other task's hop is applied and the cancel answers while its tool runs
    result = service.process_hop(c, "m2")
    # Then it may finish (its task record, once), but the superstep stays cancelled: no
    # close, no route, no hop
    assert result in ("duplicate", "stale"), result
    assert [t.node for t in store.list_tasks(run.run_id, 1)] in (["b"], ["b", "c"])
    assert set(store.commits.values()) == {1}, store.commits
    assert [s.status for s in store.list_steps(run.run_id).items] == ["ok", "cancelled"]
    assert store.get_run(run.run_id).status == "cancelled"
    assert not queue.hops


def test_a_map_at_the_entry_needs_a_list_in_the_input() -> None:
    service = RunService(CountingStore(), MemoryQueue(), basics)
    graph_id = service.create_graph(load("langgraph/map_reduce.json"))[0].graph_id
    with pytest.raises(InvalidInputError, match="runs over 'subjects', which holds nothing"):
        service.start_run(graph_id, {})
    run, _ = service.start_run(graph_id, {"subjects": []})  # nothing to map: done at once
    assert service.store.get_run(run.run_id).status == "completed"


def test_breaking_the_fan_in_leaves_runs_unfinished(monkeypatch: pytest.MonkeyPatch) -> None:
    """The invariant the close relies on: the fan-in sees every committed task. A store whose
    fan-in misses the latest task never closes the superstep, and the suite notices."""
    store, queue = CountingStore(), MemoryQueue()
    service = RunService(store, queue, basics)
    doc, given = SHAPES["fan-out"]
    original = MemoryRunStore.list_tasks
    monkeypatch.setattr(CountingStore, "list_tasks",
                        lambda self, r, s: original(self, r, s)[:-1])  # fmt: skip
    run, _ = service.start_run(service.create_graph(doc)[0].graph_id, given)
    drive(service, queue, 0, duplicates=0)
    assert store.get_run(run.run_id).status == "running"


def test_a_second_close_of_a_superstep_is_refused_by_the_store() -> None:
    store = MemoryRunStore()
    task = TaskRecord("r", 1, "b", None, "emit", "ok", {}, ("END",), 0.0, 0.0)
    with pytest.raises(Exception):  # noqa: B017 - the store must know the run: RunNotFound
        store.commit_step(StepRecord("r", 0, "a", "emit", "ok", {}, {}, None, 0.0, 0.0))
    store.commit_task(task)
    with pytest.raises(StepConflict):
        store.commit_task(task)
    assert store.list_tasks("r", 1) == [task]
    assert store.get_task("r", 1, "b", None) == task and store.get_task("r", 1, "c", None) is None


def test_a_wide_map_keeps_a_window_of_items_in_flight() -> None:
    # Given a map of 50 items with no cap of its own, and a window of 8
    doc, given = SHAPES["capped map of 50 joined"]
    uncapped = json.loads(json.dumps(doc))
    del uncapped["nodes"]["grade"]["map"]["max_concurrency"]
    store, queue = CountingStore(), MemoryQueue()
    service = RunService(store, queue, basics, config=EngineConfig(map_window=8))
    run, _ = service.start_run(service.create_graph(uncapped)[0].graph_id, given)
    service.process_hop(queue.hops.popleft(), "m0")
    # Then the superstep's first dispatch sends the window, not the map
    assert sorted(h.index for h in queue.hops if h.node == "grade") == list(range(8))
    # And however its items are delivered, no more than the window is ever queued
    most, delivered = 0, 0
    while queue.hops:
        most = max(most, sum(1 for h in queue.hops if h.node == "grade"))
        delivered += 1
        service.process_hop(queue.hops.popleft(), f"m{delivered}")
    assert most == 8
    assert store.get_run(run.run_id).state == reference(uncapped, given).state
