"""The store's part in pauses (engine/pauses.py), on every store: a pause written once per
slot, the run moved ``running -> paused`` in the same write, answered once (the run moved
back in the same write), a hold refused once an answer came, and the paused run listed by
its status."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from contract_records import T0, run

from engine.errors import StepConflict
from engine.ports import PauseRecord, RunEnd, RunStore, StepRecord


def pause(node: str = "approve", index: int | None = None, **changes: Any) -> PauseRecord:
    record = PauseRecord(
        run_id="r1", seq=1, node=node, index=index, kind="interrupt", since=T0,
        prompt="Ship it?", key="approved", schema={"type": "boolean"}, until=T0 + 60,
        on_timeout="escalate", held={"updates": {"draft": "v1"}, "parallel": False},
        committed_by="d1",
    )  # fmt: skip
    return replace(record, **changes)


def answered(record: PauseRecord, value: Any = True, **changes: Any) -> PauseRecord:
    return replace(record, answered_at=T0 + 5, value=value, committed_by="resume:1", **changes)


def test_a_pause_is_written_once_and_holds_the_run_in_the_same_write(store: RunStore) -> None:
    store.create_run(run())
    store.commit_pause(pause(), hold=True)
    assert store.get_run("r1").status == "paused"
    (read,) = store.list_pauses("r1", 1)
    assert read == pause()  # every field read back as written
    with pytest.raises(StepConflict):
        store.commit_pause(pause(committed_by="d2"), hold=False)
    assert store.list_pauses("r1", 1)[0].committed_by == "d1"


def test_a_pause_that_cannot_hold_its_run_is_not_written(store: RunStore) -> None:
    store.create_run(run())
    store.commit_pause(pause("legal"), hold=True)  # paused already: a hold would not move it
    with pytest.raises(StepConflict):
        store.commit_pause(pause("budget"), hold=True)
    assert [p.node for p in store.list_pauses("r1", 1)] == ["legal"]


def test_an_answer_is_taken_once_and_moves_the_run_back_to_running(store: RunStore) -> None:
    store.create_run(run())
    store.commit_pause(pause(), hold=True)
    store.answer_pause(answered(pause(), {"ok": [1, 2]}))
    assert store.get_run("r1").status == "running"
    (read,) = store.list_pauses("r1", 1)
    assert (read.pending, read.value, read.committed_by) == (False, {"ok": [1, 2]}, "resume:1")
    with pytest.raises(StepConflict):
        store.answer_pause(answered(pause(), False))
    assert store.list_pauses("r1", 1)[0].value == {"ok": [1, 2]}


def test_a_timed_out_answer_reads_back_as_such(store: RunStore) -> None:
    store.create_run(run())
    store.commit_pause(pause(), hold=True)
    store.answer_pause(answered(pause(), None, timed_out=True))
    assert store.list_pauses("r1", 1)[0].timed_out


def test_a_hold_is_refused_once_one_of_its_pauses_was_answered(store: RunStore) -> None:
    store.create_run(run())
    legal, budget = pause("legal"), pause("budget")
    store.commit_pause(legal, hold=False)
    store.commit_pause(budget, hold=False)
    store.answer_pause(answered(legal))
    assert not store.hold_run("r1", [legal, budget], T0 + 6)
    assert store.get_run("r1").status == "running"
    assert store.hold_run("r1", [budget], T0 + 7)
    assert store.get_run("r1").status == "paused"
    assert not store.hold_run("r1", [budget], T0 + 8)  # paused already


def test_an_ended_run_takes_no_answer(store: RunStore) -> None:
    store.create_run(run())
    store.commit_pause(pause(), hold=True)
    cancel = StepRecord(
        run_id="r1", seq=0, node="approve", tool="", status="cancelled", updates={}, state={},
        next_node=None, started_at=T0 + 1, duration_ms=0.0, run_status="cancelled",
    )  # fmt: skip
    store.commit_step(cancel, RunEnd("cancelled", "stop", from_status="paused"))
    with pytest.raises(StepConflict):
        store.answer_pause(answered(pause()))
    assert store.get_run("r1").status == "cancelled"


def test_paused_runs_are_listed_by_their_status(store: RunStore) -> None:
    store.create_run(run())
    store.create_run(run("r2", created_at=T0 + 1))
    store.commit_pause(pause(), hold=True)
    assert [r.run_id for r in store.list_runs(status="paused").items] == ["r1"]
    assert [r.run_id for r in store.list_runs(status="running").items] == ["r2"]
    store.answer_pause(answered(pause()))
    assert store.list_runs(status="paused").items == []


def test_a_pause_with_a_deadline_is_found_once_it_passed_and_forgotten(store: RunStore) -> None:
    store.create_run(run())
    store.create_run(run("r2"))
    store.commit_pause(pause(), hold=True)  # until T0 + 60
    store.commit_pause(pause(run_id="r2", until=T0 + 30), hold=True)
    store.commit_pause(pause("legal", until=None), hold=False)  # no deadline: none written
    assert store.due_deadlines(T0 + 10) == []
    due = store.due_deadlines(T0 + 60)
    assert [(d.run_id, d.task, d.until) for d in due] == [("r2", "approve", T0 + 30),
                                                          ("r1", "approve", T0 + 60)]  # fmt: skip
    store.forget_deadline(due[0])
    store.forget_deadline(due[0])  # gone already: no error
    assert [d.run_id for d in store.due_deadlines(T0 + 600)] == ["r1"]
