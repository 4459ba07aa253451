"""The RunStore contract of time travel (engine/history.py): a run created with its first
step, the redrive transition out of ``failed``, and what forks and command entries record.
Every store passes it (see the ``store`` fixture)."""

from __future__ import annotations

import threading

import pytest
from contract_records import commit_steps, run, step

from engine.errors import StepConflict
from engine.ports import RunEnd, RunStore


def failed_run(store: RunStore) -> None:
    store.create_run(run())
    commit_steps(store, "r1", 2)
    failed = step(seq=2, status="failed", error="boom", next_node=None, run_status="failed")
    store.commit_step(failed, RunEnd("failed", "boom"))


def test_a_run_created_with_its_first_step_shows_it(store: RunStore) -> None:
    # Given a fork's header and its entry
    first = step(seq=0, node="", tool="", source="fork", next_node="b")
    header = run(parent_run_id="r0", parent_seq=4)
    # When both are created
    created, fresh = store.create_run(header, first)
    # Then the run shows the entry as its latest step, and both read back
    assert fresh and created.steps == 1 and created.node == "b"
    stored = store.get_run("r1")
    assert (stored.parent_run_id, stored.parent_seq, stored.steps) == ("r0", 4, 1)
    assert store.get_step("r1", 0) == first


def test_a_second_create_with_a_first_step_writes_nothing(store: RunStore) -> None:
    store.create_run(run(), step(seq=0, source="fork"))
    again, created = store.create_run(run(input={"other": 1}), step(seq=0, node="other"))
    assert not created and again.input == run().input
    stored = store.get_step("r1", 0)
    assert stored is not None and stored.node == "a"


def test_a_redrive_moves_a_failed_run_back_to_running_with_its_entry(store: RunStore) -> None:
    # Given a failed run
    failed_run(store)
    # When a redrive commits its entry with the transition out of failed, raising the limit
    entry = step(seq=3, node="", tool="", source="redrive", attempt=2)
    store.commit_step(entry, RunEnd("running", None, "failed", 40))
    # Then the run is running again, its error cleared, its limit raised; the failure stays
    view = store.get_run("r1")
    assert (view.status, view.error, view.max_steps, view.steps) == ("running", None, 40, 4)
    assert store.get_step("r1", 3) == entry
    failed = store.get_step("r1", 2)
    assert failed is not None and failed.error == "boom"
    assert [r.run_id for r in store.list_runs(status="running").items] == ["r1"]


def test_a_transition_from_a_status_the_run_is_not_in_conflicts(store: RunStore) -> None:
    store.create_run(run())
    with pytest.raises(StepConflict):
        store.commit_step(step(seq=0, source="redrive"), RunEnd("running", None, "failed"))
    assert store.get_step("r1", 0) is None
    assert store.get_run("r1").status == "running"


def test_racing_redrives_have_exactly_one_winner(store: RunStore) -> None:
    failed_run(store)
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def redrive(i: int) -> None:
        barrier.wait()
        try:
            store.commit_step(step(seq=3, committed_by=f"redrive-{i}", source="redrive"),
                              RunEnd("running", None, "failed"))  # fmt: skip
            outcomes.append("won")
        except StepConflict:
            outcomes.append("lost")

    threads = [threading.Thread(target=redrive, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["lost", "lost", "lost", "won"]
    assert store.get_run("r1").status == "running"
