"""The store's part in a wide superstep's close (engine/fold.py), on every store: the paged
task read in slot order, the count's time of its last commit, and the fold record written
once per cursor. A fold record of several megabytes keeps to DynamoDB's item limit through
blobs, as a step's state does."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import pytest
from contract_records import T0, run
from test_large_values import MB, _text, big_store, counting, s3  # noqa: F401 (fixtures)

from engine.errors import StepConflict
from engine.ports import FoldRecord, RunStore, TaskRecord
from functions.aws import dynamodb_items as items
from functions.aws.dynamodb_store import DynamoRunStore


def task(node: str, index: int | None = None, seq: int = 1, **changes: Any) -> TaskRecord:
    record = TaskRecord(
        run_id="r1", seq=seq, node=node, index=index, tool="emit", status="ok",
        updates={"out": [node, index]}, targets=("d",), started_at=T0, duration_ms=1.5,
        committed_by=f"m-{node}-{index}",
    )  # fmt: skip
    return replace(record, **changes)


def fold(cursor: str, pages: int = 1, **changes: Any) -> FoldRecord:
    record = FoldRecord(
        run_id="r1", seq=1, cursor=cursor, state={"graded": ["a", "b"], "n": pages},
        folded={"count": pages * 4, "targets": ["done"], "writers": {"k": ["grade", 3]}},
        node="grade", index=3, pages=pages, committed_by=f"f{pages}", updated_at=T0 + pages,
    )  # fmt: skip
    return replace(record, **changes)


def test_the_paged_read_walks_one_superstep_in_slot_order(store: RunStore) -> None:
    store.create_run(run())
    # Given plain tasks and two maps' items of superstep 1 (committed out of order), and a
    # task of superstep 2
    committed = [task("grade", i) for i in (10, 2, 0, 7, 1)]
    committed += [task("b#odd id"), task("a"), task("z", 2), task("z", 0)]
    for record in committed:
        store.commit_task(record)
    store.commit_task(task("grade", 0, seq=2))
    # When it is read in pages of 3
    pages: list[list[TaskRecord]] = []
    after = None
    while True:
        page = store.list_tasks_page("r1", 1, after, 3)
        assert len(page.items) <= 3
        pages.append(page.items)
        if page.cursor is None:
            break
        after = page.cursor
    # Then every task of superstep 1 comes once, plain ones by node, then by index and node
    read = [(t.node, t.index) for p in pages for t in p]
    assert read == [("a", None), ("b#odd id", None), ("grade", 0), ("z", 0), ("grade", 1),
                    ("grade", 2), ("z", 2), ("grade", 7), ("grade", 10)]  # fmt: skip
    assert [t for p in pages for t in p] == sorted(
        committed, key=lambda t: ("-" if t.index is None else f"{t.index:06d}", t.node)
    )
    # And one page holds all of it, and a superstep with no task reads as an empty page
    whole = store.list_tasks_page("r1", 1, None, 100)
    assert len(whole.items) == len(committed) and whole.cursor is None
    assert store.list_tasks_page("r1", 3, None, 10).items == []


def test_the_count_carries_the_end_of_its_last_commit(store: RunStore) -> None:
    store.create_run(run())
    assert store.task_progress("r1", 1) == (0, 0.0)
    store.commit_task(task("grade", 0, started_at=T0 + 5, duration_ms=500.0), counted=True)
    store.commit_task(task("grade", 1, started_at=T0 + 9, duration_ms=250.0), counted=True)
    store.commit_task(task("b"))  # not counted: not a progress of the count
    assert store.task_progress("r1", 1) == (2, T0 + 9.25)
    assert store.count_tasks("r1", 1) == 2


def test_a_fold_record_is_written_once_per_cursor(store: RunStore) -> None:
    store.create_run(run())
    assert store.get_fold("r1", 1) is None
    # The first page's record only where none is
    store.commit_fold(fold("000003#grade"), None)
    with pytest.raises(StepConflict):
        store.commit_fold(fold("000003#grade", committed_by="again"), None)
    assert store.get_fold("r1", 1) == fold("000003#grade")
    # Each next one only over the record read at its cursor
    store.commit_fold(fold("000007#grade", 2), "000003#grade")
    with pytest.raises(StepConflict):
        store.commit_fold(fold("000011#grade", 3), "000003#grade")  # a copy that read page 1
    assert store.get_fold("r1", 1) == fold("000007#grade", 2)
    # A fold record is neither a task nor a step, and another superstep has none
    assert store.list_tasks("r1", 1) == [] and store.list_steps("r1").items == []
    assert store.get_fold("r1", 2) is None


def test_racing_fold_commits_at_one_cursor_have_exactly_one_winner(store: RunStore) -> None:
    store.create_run(run())
    store.commit_fold(fold("000003#grade"), None)
    winners: list[str] = []
    barrier = threading.Barrier(6)

    def commit(who: str) -> None:
        barrier.wait()
        try:
            store.commit_fold(fold("000007#grade", 2, committed_by=who), "000003#grade")
            winners.append(who)
        except StepConflict:
            pass

    threads = [threading.Thread(target=commit, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
    found = store.get_fold("r1", 1)
    assert found is not None and found.committed_by == winners[0]


def test_a_fold_record_of_megabytes_keeps_to_an_item(big_store: RunStore) -> None:  # noqa: F811
    # Given a fold whose merged state and sends hold several megabytes
    big_store.create_run(run())
    state = {"graded": [_text(MB, i) for i in range(3)], "doc": _text(2 * MB, 9)}
    folded = {"sends": [{"node": "n", "payload": {"x": _text(MB, 7)}}], "count": 3}
    record = fold("000003#grade", state=state, folded=folded)
    # When it is committed, Then it reads back whole
    big_store.commit_fold(record, None)
    assert big_store.get_fold("r1", 1) == record
    if isinstance(big_store, DynamoRunStore):  # and its item holds pointers, not megabytes
        item = big_store._get(items.fold_key("r1", 1))
        assert item is not None and items.item_size(item) < items.MAX_ITEM_BYTES
