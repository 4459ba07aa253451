"""The RunStore contract: every implementation passes this one suite (see ``store`` fixture).

Each test is one promise of ``engine/ports.py``'s RunStore docstrings, atomicity included.
"""

from __future__ import annotations

import contextlib
import math
import random
import string
import threading
from dataclasses import replace
from typing import Any

import pytest
from contract_records import (
    GRAPH_LISTED,
    RUN_LISTED,
    T0,
    FakeClock,
    commit_steps,
    connection,
    final_step,
    graph,
    listed,
    run,
    step,
    walk,
)

from engine.commands import cancel_run
from engine.errors import (
    ConflictError,
    GraphNotFound,
    InvalidInputError,
    NotFoundError,
    RunNotFound,
    StepConflict,
)
from engine.ports import (
    AttemptRecord,
    GraphRecord,
    RunEnd,
    RunRecord,
    RunStore,
    Slot,
    StepRecord,
    TaskRecord,
)

# ------------------------------------------------------------------------------- graphs


def test_graph_round_trips(store: RunStore) -> None:
    # Given a saved graph
    store.put_graph(graph())
    # Then it reads back equal
    assert store.get_graph("g1") == graph()


def test_graphs_are_immutable(store: RunStore) -> None:
    store.put_graph(graph())
    changed = GraphRecord("g1", "other", {"changed": True}, T0 + 5)
    with pytest.raises(ConflictError):
        store.put_graph(changed)
    assert store.get_graph("g1") == graph()


def test_unknown_graph_raises_graph_not_found(store: RunStore) -> None:
    with pytest.raises(GraphNotFound):
        store.get_graph("nope")


def test_list_graphs_newest_first_across_pages(store: RunStore) -> None:
    # Given seven graphs created one second apart, in shuffled order
    order = list(range(7))
    random.Random(3).shuffle(order)
    for i in order:
        store.put_graph(graph(f"g{i}", created_at=T0 + i))
    # When every page of three is read
    pages = walk(store.list_graphs, limit=3)
    # Then pages hold 3, 3, 1 graphs, newest first, with no duplicate and no gap
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [g.graph_id for p in pages for g in p] == [f"g{i}" for i in reversed(range(7))]
    # And a listed graph shows what it is (its definition is read with get_graph)
    shown = listed(store.list_graphs().items[0], GRAPH_LISTED)
    assert shown == listed(graph("g6", created_at=T0 + 6), GRAPH_LISTED)


def test_list_graphs_refuses_a_bad_cursor(store: RunStore) -> None:
    store.put_graph(graph())
    with pytest.raises(InvalidInputError):
        store.list_graphs(cursor="not a cursor!")


# ------------------------------------------------------------------------------- runs


def test_create_run_returns_its_initial_view(store: RunStore) -> None:
    created, is_new = store.create_run(run())
    assert is_new is True
    assert (created.state, created.node, created.steps) == (run().input, "a", 0)
    assert store.get_run("r1") == created


def test_create_run_is_idempotent(store: RunStore) -> None:
    # Given a run that exists and has a step
    store.create_run(run())
    store.commit_step(step())
    # When the same id is created again, with another input
    again, is_new = store.create_run(run(input={"other": 1}))
    # Then the existing run is returned, untouched
    assert is_new is False
    assert again.input == run().input
    assert again.steps == 1
    assert again == store.get_run("r1")


def test_create_run_returns_the_stored_request_digest_to_the_second_start(
    store: RunStore,
) -> None:
    # Given a run started with an idempotency key: its header keeps the input's digest
    store.create_run(run(idempotency_key="k", input_digest="d1"))
    # When the same id is created again, by a request with another input
    again, is_new = store.create_run(run(idempotency_key="k", input={"x": 2}, input_digest="d2"))
    # Then the stored run comes back with its own digest and step limit, so the caller can
    # tell the two requests apart without reading anything else
    assert is_new is False
    assert (again.input_digest, again.max_steps) == ("d1", run().max_steps)
    assert store.get_run("r1").input_digest == "d1"


def test_unknown_run_raises_run_not_found(store: RunStore) -> None:
    with pytest.raises(RunNotFound):
        store.get_run("nope")
    with pytest.raises(RunNotFound):
        store.list_steps("nope")
    with pytest.raises(RunNotFound):
        cancel_run(store, "nope", T0, "stop")
    with pytest.raises(RunNotFound):
        store.commit_step(final_step("nope"), RunEnd("completed"))
    assert store.get_step("nope", 0) is None


def test_get_run_shows_the_latest_committed_step(store: RunStore) -> None:
    # Given a run
    store.create_run(run())
    # When a step that routes to node b is committed
    first = step(seq=0, next_node="b", state={"x": 1})
    store.commit_step(first)
    # Then the run's view is that step's
    view = store.get_run("r1")
    assert (view.status, view.state, view.node, view.steps) == ("running", {"x": 1}, "b", 1)
    # When a second step ends the run
    last = step(seq=1, node="b", state={"x": 2}, next_node=None, run_status="completed")
    store.commit_step(last, RunEnd("completed"))
    # Then the run is completed, with the final state and no next node
    view = store.get_run("r1")
    assert (view.status, view.state, view.node, view.steps) == ("completed", {"x": 2}, None, 2)
    assert view.error is None
    assert view.input == run().input


# ------------------------------------------------------------------------------- commits


def test_a_slot_is_committed_once(store: RunStore) -> None:
    store.create_run(run())
    store.commit_step(step(committed_by="first"))
    with pytest.raises(StepConflict) as raised:
        store.commit_step(step(committed_by="second", state={"other": True}))
    assert (raised.value.run_id, raised.value.seq) == ("r1", 0)
    assert store.get_step("r1", 0) == step(committed_by="first")


@pytest.mark.parametrize("end", [None, RunEnd("completed")], ids=["step", "terminal"])
def test_racing_commits_of_one_slot_have_exactly_one_winner(
    store: RunStore, end: RunEnd | None
) -> None:
    # Five rounds, each on a new run: a race is won or lost by timing, so try it more than once
    for round_ in range(5):
        run_id = f"race{round_}"
        # Given a run, and eight workers holding the same hop (eight deliveries of it)
        store.create_run(run(run_id))
        winners, losers, errors = _race(store, run_id, end, workers=8)
        # Then exactly one committed, and the slot holds its step
        assert errors == []
        assert len(winners) == 1 and len(losers) == 7, f"round {round_}"
        committed = store.get_step(run_id, 0)
        assert committed is not None and committed.committed_by == winners[0]
        assert store.get_run(run_id).status == ("running" if end is None else end.status)


def _race(
    store: RunStore, run_id: str, end: RunEnd | None, workers: int
) -> tuple[list[str], list[str], list[BaseException]]:
    """Commit slot 0 of ``run_id`` from ``workers`` threads released at once."""
    barrier = threading.Barrier(workers)
    winners: list[str] = []
    losers: list[str] = []
    errors: list[BaseException] = []

    def commit(delivery: str) -> None:
        candidate = final_step(run_id) if end is not None else step(run_id)
        candidate = replace(candidate, committed_by=delivery)
        barrier.wait()
        try:
            store.commit_step(candidate, end)
            winners.append(delivery)
        except StepConflict:
            losers.append(delivery)
        except BaseException as exc:  # surfaced by the caller: a thread's error fails the test
            errors.append(exc)

    threads = [threading.Thread(target=commit, args=(f"d{i}",)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return winners, losers, errors


def test_terminal_commit_ends_the_run_with_its_step(store: RunStore) -> None:
    store.create_run(run())
    commit_steps(store, "r1", 2)
    failed = step(seq=2, status="failed", error="tool t failed: boom", next_node=None,
                  run_status="failed")  # fmt: skip
    store.commit_step(failed, RunEnd("failed", "tool t failed: boom"))
    view = store.get_run("r1")
    assert (view.status, view.error, view.steps) == ("failed", "tool t failed: boom", 3)
    assert store.get_step("r1", 2) == failed


def test_no_terminal_commit_after_the_run_is_final(store: RunStore) -> None:
    # Given a completed run
    store.create_run(run())
    store.commit_step(final_step(seq=0), RunEnd("completed"))
    # When another terminal step is committed into the next slot
    with pytest.raises(StepConflict):
        store.commit_step(final_step(seq=1, status="failed"), RunEnd("failed", "late"))
    # Then nothing was written: neither the step nor the header
    assert store.get_step("r1", 1) is None
    view = store.get_run("r1")
    assert (view.status, view.error, view.steps) == ("completed", None, 1)


def test_terminal_commit_into_a_taken_slot_conflicts_and_leaves_the_run_running(
    store: RunStore,
) -> None:
    store.create_run(run())
    store.commit_step(step(seq=0))
    with pytest.raises(StepConflict):
        store.commit_step(final_step(seq=0), RunEnd("completed"))
    assert store.get_run("r1").status == "running"
    assert store.get_step("r1", 0) == step(seq=0)


def test_get_step_of_an_empty_slot_is_none(store: RunStore) -> None:
    store.create_run(run())
    store.commit_step(step(seq=0))
    assert store.get_step("r1", 1) is None
    assert store.get_step("r1", 0) == step(seq=0)


# ------------------------------------------------------------------------------- step log


def test_list_steps_in_order_across_pages(store: RunStore) -> None:
    # Given a run with seven steps
    store.create_run(run())
    steps = commit_steps(store, "r1", 7)
    # When the log is read three at a time, each cursor passed back as ``after``
    pages: list[list[StepRecord]] = []
    after = -1
    for _ in range(10):
        page = store.list_steps("r1", after=after, limit=3)
        pages.append(page.items)
        if page.cursor is None:
            break
        after = int(page.cursor)
    # Then every step comes once, in order; only the last page may be short (or empty)
    assert [s for p in pages for s in p] == steps
    assert all(len(p) == 3 for p in pages[:2]) and len(pages) in (3, 4)


def test_list_steps_after(store: RunStore) -> None:
    store.create_run(run())
    steps = commit_steps(store, "r1", 7)
    assert store.list_steps("r1", after=4).items == steps[5:]
    assert store.list_steps("r1", after=6).items == []


def test_list_steps_of_a_run_without_steps_is_empty(store: RunStore) -> None:
    store.create_run(run())
    page = store.list_steps("r1")
    assert (page.items, page.cursor) == ([], None)


# ------------------------------------------------------------------------------- cancel


def test_cancel_takes_the_next_slot(store: RunStore) -> None:
    # Given a run with two steps
    store.create_run(run())
    steps = commit_steps(store, "r1", 2)
    # When it is cancelled
    cancelled = cancel_run(store, "r1", T0 + 50, "stop please")
    # Then the run is cancelled and slot 2 holds a cancelled step with the latest state
    assert (cancelled.status, cancelled.error, cancelled.node) == ("cancelled", "stop please", None)
    assert (cancelled.steps, cancelled.state, cancelled.updated_at) == (3, steps[1].state, T0 + 50)
    assert store.get_run("r1") == cancelled
    taken = store.get_step("r1", 2)
    assert taken is not None
    assert (taken.status, taken.run_status, taken.error) == (
        "cancelled",
        "cancelled",
        "stop please",
    )
    # And the worker that was about to commit slot 2 loses
    with pytest.raises(StepConflict):
        store.commit_step(step(seq=2))
    with pytest.raises(StepConflict):
        store.commit_step(final_step(seq=3), RunEnd("completed"))
    assert store.get_run("r1").status == "cancelled"


def test_cancel_before_any_step_keeps_the_input(store: RunStore) -> None:
    store.create_run(run())
    cancelled = cancel_run(store, "r1", T0 + 1, "stop")
    assert (cancelled.steps, cancelled.state) == (1, run().input)
    taken = store.get_step("r1", 0)
    assert taken is not None and taken.state == run().input


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
def test_cancelling_a_final_run_conflicts(store: RunStore, status: str) -> None:
    store.create_run(run())
    if status == "cancelled":
        cancel_run(store, "r1", T0 + 1, "first")
    else:
        store.commit_step(final_step(status=status), RunEnd(status, None))  # type: ignore[arg-type]
    with pytest.raises(ConflictError, match=f"already {status}"):
        cancel_run(store, "r1", T0 + 2, "again")
    assert len(store.list_steps("r1").items) == 1


# ------------------------------------------------------------------------------- list_runs


@pytest.fixture
def runs(store: RunStore) -> dict[str, RunRecord]:
    """Nine runs of two graphs, one second apart (r8 newest), in every status."""
    created: dict[str, RunRecord] = {}
    for i in range(9):
        record, _ = store.create_run(run(f"r{i}", graph_id=f"g{i % 2}", created_at=T0 + i))
        created[record.run_id] = record
    store.commit_step(final_step("r1"), RunEnd("completed"))
    store.commit_step(final_step("r2"), RunEnd("completed"))
    store.commit_step(final_step("r5", status="failed"), RunEnd("failed", "boom"))
    cancel_run(store, "r6", T0 + 60, "stop")
    cancel_run(store, "r7", T0 + 60, "stop")
    return created


EXPECTED_STATUS = {
    "r0": "running", "r1": "completed", "r2": "completed", "r3": "running", "r4": "running",
    "r5": "failed", "r6": "cancelled", "r7": "cancelled", "r8": "running",
}  # fmt: skip


@pytest.mark.parametrize(
    ("graph_id", "status"),
    [(None, None), ("g0", None), ("g1", None), (None, "running"), (None, "cancelled"),
     ("g0", "running"), ("g1", "cancelled"), ("g0", "failed")],
)  # fmt: skip
def test_list_runs_filters_and_pages(
    store: RunStore, runs: dict[str, RunRecord], graph_id: str | None, status: Any
) -> None:
    # Given the runs the fixture made, and what the filter should keep, newest first
    expected = [
        f"r{i}"
        for i in reversed(range(9))
        if (graph_id is None or f"g{i % 2}" == graph_id)
        and (status is None or EXPECTED_STATUS[f"r{i}"] == status)
    ]

    def fetch(limit: int, cursor: str | None) -> Any:
        return store.list_runs(graph_id=graph_id, status=status, limit=limit, cursor=cursor)

    for limit in (1, 2, 4, 50):
        # When every page is read
        pages = walk(fetch, limit)
        # Then the pages hold each matching run once, newest first, all full but the last,
        # and the last cursor comes with the last run (no empty page after it)
        listed_runs = [r for page in pages for r in page]
        assert [r.run_id for r in listed_runs] == expected, f"limit {limit}"
        assert len(pages) == max(1, math.ceil(len(expected) / limit)), f"limit {limit}"
        # And each run shows its header as it is now
        for record in listed_runs:
            assert record.graph_id == runs[record.run_id].graph_id
            assert record.status == EXPECTED_STATUS[record.run_id]
            now = store.get_run(record.run_id)
            assert listed(record, RUN_LISTED) == listed(now, RUN_LISTED)


def test_list_runs_of_an_unknown_graph_is_empty(
    store: RunStore, runs: dict[str, RunRecord]
) -> None:
    page = store.list_runs(graph_id="nope")
    assert (page.items, page.cursor) == ([], None)


def test_list_runs_refuses_a_bad_cursor(store: RunStore, runs: dict[str, RunRecord]) -> None:
    for graph_id, status in [(None, None), ("g0", None), (None, "running")]:
        with pytest.raises(InvalidInputError):
            store.list_runs(graph_id=graph_id, status=status, cursor="%%%")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- connections


def test_subscribers_of_a_run(store: RunStore) -> None:
    # Given two connections subscribed to r1 and one to r2
    for conn_id in ("c2", "c1", "c3"):
        store.save_connection(connection(conn_id))
    store.subscribe("c2", "r1")
    store.subscribe("c1", "r1")
    store.subscribe("c3", "r2")
    store.subscribe("c1", "r1")  # twice: still one subscription
    # Then each run lists its own, ordered by connection id
    assert store.subscribers("r1") == [connection("c1"), connection("c2")]
    assert store.subscribers("r2") == [connection("c3")]
    assert store.subscribers("r3") == []


def test_a_recorded_replay_travels_with_the_subscriber(store: RunStore) -> None:
    # Given two subscribers of r1, one of which replayed the log up to step 4
    for conn_id in ("c1", "c2"):
        store.save_connection(connection(conn_id))
        store.subscribe(conn_id, "r1")
    store.record_replay("c1", "r1", 4)
    store.record_replay("c3", "r1", 9)  # not subscribed: nothing to note
    # Then the subscribers carry how far their replay got (None: not recorded)
    assert [(c.connection_id, c.replayed_through) for c in store.subscribers("r1")] == [
        ("c1", 4),
        ("c2", None),
    ]
    # And subscribing again starts over, and unsubscribing is not undone by a late record
    store.subscribe("c1", "r1")
    store.unsubscribe("c2", "r1")
    store.record_replay("c2", "r1", 5)
    assert [(c.connection_id, c.replayed_through) for c in store.subscribers("r1")] == [
        ("c1", None)
    ]


def test_a_slot_read_gives_the_origin_and_the_subscribers(store: RunStore) -> None:
    # Given a run with two committed steps and two subscribers, one expired
    store.create_run(run())
    store.save_connection(connection("live"))
    store.save_connection(connection("gone", expires_at=int(T0) - 1))
    store.subscribe("live", "r1")
    store.subscribe("gone", "r1")
    store.record_replay("live", "r1", 0)
    first = step(seq=0, notified=("live",))
    store.commit_step(first)
    store.commit_step(step(seq=1))
    # When the slots of supersteps 0, 1 and 2 are read
    zero, one, two = (store.read_slot("r1", seq) for seq in (0, 1, 2))
    # Then superstep 0 starts from the run's header, the others from the step before
    assert zero.run is not None and zero.previous is None
    assert (zero.run.run_id, zero.run.status, zero.run.input) == ("r1", "running", run().input)
    assert one.run is None and one.previous == first
    assert two.previous == step(seq=1)
    # And every slot lists the live subscribers, with how far their replay got
    for slot in (zero, one, two):
        assert [(c.connection_id, c.replayed_through) for c in slot.subscribers] == [("live", 0)]


def test_a_slot_read_of_an_unknown_run_or_an_empty_slot_is_empty(store: RunStore) -> None:
    store.create_run(run())
    assert store.read_slot("ghost", 0) == Slot(run=None, previous=None, subscribers=())
    assert store.read_slot("r1", 3) == Slot(run=None, previous=None, subscribers=())


def test_a_slot_read_pages_through_many_subscribers(store: RunStore) -> None:
    # Given a run with a step and more subscribers than one page of a slot read holds
    store.create_run(run())
    store.commit_step(step(seq=0))
    ids = [f"c{i:02d}" for i in range(40)]
    for conn_id in ids:
        store.save_connection(connection(conn_id))
        store.subscribe(conn_id, "r1")
    # When the slot after it is read, Then every subscriber is there
    assert [c.connection_id for c in store.read_slot("r1", 1).subscribers] == ids


def test_subscribe_an_unknown_connection(store: RunStore) -> None:
    with pytest.raises(NotFoundError) as raised:
        store.subscribe("ghost", "r1")
    assert raised.value.kind == "connection"
    assert store.subscribers("r1") == []


def test_unsubscribe(store: RunStore) -> None:
    store.save_connection(connection("c1"))
    store.subscribe("c1", "r1")
    store.subscribe("c1", "r2")
    store.unsubscribe("c1", "r1")
    store.unsubscribe("c1", "r1")  # not subscribed any more: no error
    store.unsubscribe("c9", "r9")  # never known: no error
    assert store.subscribers("r1") == []
    assert store.subscribers("r2") == [connection("c1")]


def test_expired_connections_are_not_subscribers(store: RunStore, clock: FakeClock) -> None:
    # Given a connection expiring in 10 s and one in an hour, both subscribed
    store.save_connection(connection("short", expires_at=int(T0) + 10))
    store.save_connection(connection("long"))
    store.subscribe("short", "r1")
    store.subscribe("long", "r1")
    assert [c.connection_id for c in store.subscribers("r1")] == ["long", "short"]
    # When 11 seconds pass
    clock.now = T0 + 11
    # Then only the live one is a subscriber
    assert store.subscribers("r1") == [connection("long")]


def test_delete_connection_removes_its_subscriptions(store: RunStore) -> None:
    # Given a connection subscribed to three runs, and another one to one of them
    store.save_connection(connection("c1"))
    store.save_connection(connection("c2"))
    for run_id in ("r1", "r2", "r3"):
        store.subscribe("c1", run_id)
    store.subscribe("c2", "r2")
    # When c1 is deleted (twice, and an unknown one: no error)
    store.delete_connection("c1")
    store.delete_connection("c1")
    store.delete_connection("never")
    # Then it is gone from every run, and cannot subscribe any more
    assert store.subscribers("r1") == [] and store.subscribers("r3") == []
    assert store.subscribers("r2") == [connection("c2")]
    with pytest.raises(NotFoundError):
        store.subscribe("c1", "r1")


# ------------------------------------------------------------------------------- big states


def _big_state(kind: str, size: int) -> dict[str, Any]:
    rng = random.Random(7)
    if kind == "random":  # incompressible beyond base64's 6 bits per character
        alphabet = string.ascii_letters + string.digits + "+/"
        blob = "".join(rng.choice(alphabet) for _ in range(size))
    else:  # source-like text: compresses well
        words = ["def", "return", "self", "value", "(", ")", ":", "\n    ", "if", "for", "in"]
        blob = " ".join(rng.choice(words) for _ in range(size // 4))[:size]
    return {"code": blob, "iteration": 3, "issues": [{"line": i, "kind": "x"} for i in range(5)]}


@pytest.mark.parametrize("kind", ["text", "random"])
def test_a_300_kb_state_round_trips(store: RunStore, kind: str) -> None:
    # Given a 300 KB state, whose step also updated the big value
    state = _big_state(kind, 300_000)
    updates = {"code": state["code"], "iteration": 3}
    store.create_run(run(input=state))
    # When it is committed (then once more, ending the run)
    store.commit_step(step(seq=0, state=state, updates=updates))
    store.commit_step(
        step(seq=1, state=state, updates=updates, next_node=None, run_status="completed"),
        RunEnd("completed"),
    )
    # Then the state reads back exactly, from every read path
    first = store.get_step("r1", 0)
    assert first is not None and first.state == state
    assert set(first.updates) == set(updates)  # values may be left out when huge: see items
    assert store.get_run("r1").state == state
    assert store.get_run("r1").input == state
    assert [s.state == state for s in store.list_steps("r1").items] == [True, True]


# ------------------------------------------------------------------------------- supersteps
def task(node: str, index: int | None = None, **changes: Any) -> TaskRecord:
    record = TaskRecord(
        run_id="r1", seq=1, node=node, index=index, tool="emit", status="ok",
        updates={"out": [node]}, targets=("d",), started_at=T0, duration_ms=1.5,
        committed_by=f"m-{node}",
    )  # fmt: skip
    return replace(record, **changes)


def test_a_task_slot_is_committed_once_and_read_back(store: RunStore) -> None:
    store.create_run(run())
    store.commit_task(task("b"))
    with pytest.raises(StepConflict):
        store.commit_task(task("b", committed_by="other", updates={"x": 1}))
    assert store.get_task("r1", 1, "b", None) == task("b")
    assert store.get_task("r1", 1, "c", None) is None
    assert store.get_task("r1", 2, "b", None) is None


def test_the_fan_in_reads_every_task_of_one_superstep_only(store: RunStore) -> None:
    store.create_run(run())
    # Given map items and plain tasks of superstep 1, a task of superstep 2, and a step
    for index in (10, 2, 0):
        store.commit_task(task("grade", index, targets=(), error=None))
    store.commit_task(task("b#odd id"))
    store.commit_task(task("b", seq=2))
    commit_steps(store, "r1", 2)
    # When the fan-in reads superstep 1, Then it gets exactly its tasks, whatever their ids
    found = store.list_tasks("r1", 1)
    assert sorted((t.node, t.index) for t in found) == [
        ("b#odd id", None), ("grade", 0), ("grade", 2), ("grade", 10)
    ]  # fmt: skip
    assert {t.key for t in found} == {"b#odd id", "grade[0]", "grade[2]", "grade[10]"}
    assert store.list_tasks("r1", 3) == []
    assert [s.seq for s in store.list_steps("r1").items] == [0, 1]  # tasks are not steps


def test_racing_task_commits_have_exactly_one_winner(store: RunStore) -> None:
    store.create_run(run())
    winners: list[str] = []
    barrier = threading.Barrier(6)

    def commit(who: str) -> None:
        barrier.wait()
        try:
            store.commit_task(task("b", committed_by=who))
            winners.append(who)
        except StepConflict:
            pass

    threads = [threading.Thread(target=commit, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
    assert store.get_task("r1", 1, "b", None) == task("b", committed_by=winners[0])


def test_a_counted_commit_counts_each_task_once_in_its_own_superstep(store: RunStore) -> None:
    store.create_run(run())
    # Given counted commits of three map items, one of them delivered twice, one plain
    # commit, and a counted commit of the next superstep
    for index in (0, 1, 2):
        store.commit_task(task("grade", index), counted=True)
    with pytest.raises(StepConflict):
        store.commit_task(task("grade", 1, committed_by="again"), counted=True)
    store.commit_task(task("b"))
    store.commit_task(task("grade", 0, seq=2), counted=True)
    # When the supersteps' counts are read
    # Then each counted task is counted once, in its superstep; the taken slot and the plain
    # commit add nothing, and the count is no task of the fan-in
    assert store.count_tasks("r1", 1) == 3
    assert store.count_tasks("r1", 2) == 1
    assert store.count_tasks("r1", 3) == 0
    assert len(store.list_tasks("r1", 1)) == 4
    assert store.list_steps("r1").items == []


def test_racing_counted_commits_count_the_winner_only(store: RunStore) -> None:
    store.create_run(run())
    barrier = threading.Barrier(6)

    def commit(who: str) -> None:
        barrier.wait()
        with contextlib.suppress(StepConflict):
            store.commit_task(task("b", committed_by=who), counted=True)

    threads = [threading.Thread(target=commit, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.count_tasks("r1", 1) == 1


def test_a_superstep_close_keeps_its_next_nodes_joins_and_tasks(store: RunStore) -> None:
    store.create_run(run())
    summaries = (task("b").summary(), task("grade", 3, error="boom").summary())
    close = replace(
        step(), next_node=None, next_nodes=("c", "d"), joins={"e": ["b"]}, tasks=summaries
    )
    store.commit_step(close)
    back = store.get_step("r1", 0)
    assert back == close
    assert back is not None and back.successors == ("c", "d")
    assert back.log_entry()["next"] == ["c", "d"]
    assert back.log_entry()["tasks"][1] == {
        "task": "grade[3]", "node": "grade", "tool": "emit", "status": "ok",
        "duration_ms": 1.5, "index": 3, "error": "boom",
    }  # fmt: skip


@pytest.mark.parametrize("cursor", ["11³", "²", "١٢"])
def test_a_cursor_of_non_ascii_digits_is_refused(store: RunStore, cursor: str) -> None:
    # "²".isdigit() is True, but int("²") fails: such a cursor is a client's mistake
    with pytest.raises(InvalidInputError):
        store.list_runs(cursor=cursor)
    with pytest.raises(InvalidInputError):
        store.list_graphs(cursor=cursor)


def test_items_sent_and_deferred_nodes_round_trip_in_steps_and_tasks(store: RunStore) -> None:
    # Given a close that sent items and left a deferred node waiting, and a task that sent
    store.create_run(run())
    sends = ({"node": "w", "payload": {"section": "intro"}}, {"node": "w", "payload": {}})
    closed = step(seq=0, next_node=None, next_nodes=(), sends=sends, deferred=("d",))
    sent = task("b", sends=sends)
    store.commit_step(closed)
    store.commit_task(sent)
    # Then both read back whole: a worker plans the next superstep from them
    assert store.get_step("r1", 0) == closed
    assert store.get_step("r1", 0).successors == ()  # type: ignore[union-attr]
    assert store.get_task("r1", 1, "b", None) == sent
    assert store.read_slot("r1", 1).previous == closed


# ------------------------------------------------------------------------------- subgraphs
def test_a_child_run_keeps_its_parent_link_and_the_parent_its_childs_id(store: RunStore) -> None:
    # Given a parent run whose superstep 0 ran a subgraph task, as one step and as a task
    link = {"run_id": "r1", "graph_id": "g1", "seq": 0, "node": "a", "index": 2,
            "task": "a[2]", "parallel": True}  # fmt: skip
    store.create_run(run())
    store.create_run(run("rs_child", parent=link, owner="alice"))
    store.commit_task(task("a", 2, child_run_id="rs_child"))
    store.commit_step(step(child_run_id="rs_child"))
    # Then each reads back the other's id
    assert store.get_run("rs_child").parent == link
    assert store.get_run("r1").parent is None
    assert store.get_task("r1", 1, "a", 2) == task("a", 2, child_run_id="rs_child")
    found = store.get_step("r1", 0)
    assert found is not None and found.child_run_id == "rs_child"
    assert found.log_entry()["child_run_id"] == "rs_child"


# ------------------------------------------------------------------------------- attempts
def attempt(n: int, node: str = "b", index: int | None = None, **changes: Any) -> AttemptRecord:
    record = AttemptRecord(
        run_id="r1", seq=1, node=node, index=index, attempt=n, tool="emit",
        error="tool 'emit' failed: ConnectionError: reset", error_type="ConnectionError",
        started_at=T0, duration_ms=2.5, retry_at=T0 + 1.5, committed_by=f"m{n}",
    )  # fmt: skip
    return replace(record, **changes)


def test_an_attempt_slot_is_committed_once(store: RunStore) -> None:
    store.create_run(run())
    store.commit_attempt(attempt(1))
    with pytest.raises(StepConflict):
        store.commit_attempt(attempt(1, committed_by="another copy", retry_at=None))
    store.commit_attempt(attempt(2, retry_at=None))  # the last: no retry
    assert store.list_attempts("r1", 1) == [attempt(1), attempt(2, retry_at=None)]


def test_the_attempts_of_one_superstep_are_read_together_and_apart_from_the_log(
    store: RunStore,
) -> None:
    store.create_run(run())
    # Given attempts of map items and of an odd node id in superstep 1, one in superstep 2,
    # and committed steps
    for index in (10, 2):
        store.commit_attempt(attempt(1, "grade", index))
    store.commit_attempt(attempt(12, "b#odd id"))
    store.commit_attempt(attempt(1, seq=2))
    commit_steps(store, "r1", 2)
    # Then superstep 1 reads its three, and neither the log nor the slot check sees them
    found = store.list_attempts("r1", 1)
    assert sorted((a.node, a.index, a.attempt) for a in found) == [
        ("b#odd id", None, 12), ("grade", 2, 1), ("grade", 10, 1)
    ]  # fmt: skip
    assert attempt(12, "b#odd id") in found  # read back whole, odd id and all
    assert store.list_attempts("r1", 3) == []
    assert [s.seq for s in store.list_steps("r1").items] == [0, 1]
    assert store.list_tasks("r1", 1) == []
    assert not store.read_slot("r1", 2).taken
    assert store.read_slot("r1", 2).previous == store.get_step("r1", 1)
