"""The RunStore contract of a superstep's tasks read a page at a time (``list_tasks_page``):
what lets a reader of a 10,000-item map hold one page in memory, not the whole fan-in.
Every store passes it (see the ``store`` fixture)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from contract_records import T0, run

from engine.ports import RunStore, TaskRecord


def task(node: str, index: int | None = None, seq: int = 1) -> TaskRecord:
    return TaskRecord(
        run_id="r1", seq=seq, node=node, index=index, tool="emit", status="ok",
        updates={"out": [node, index]}, targets=(), started_at=T0, duration_ms=1.5,
        committed_by=f"m-{node}-{index}",
    )  # fmt: skip


def pages(store: RunStore, seq: int, limit: int) -> list[list[TaskRecord]]:
    """Every page of superstep ``seq``'s tasks, following cursors until there are none."""
    found, after = [], None
    for _ in range(100):
        page = store.list_tasks_page("r1", seq, after, limit)
        if page.items:  # a store may give a cursor whose next page turns out empty
            found.append(page.items)
        after = page.cursor
        if after is None:
            return found
    raise AssertionError("pagination does not end")


def in_order(tasks: list[TaskRecord]) -> list[TaskRecord]:
    return sorted(tasks, key=lambda t: (-1 if t.index is None else t.index, t.node))


def a_wide_superstep(store: RunStore, **changes: Any) -> None:
    store.create_run(run())
    for index in (10, 2, 0, 7, 3):
        store.commit_task(replace(task("grade", index), **changes))
    store.commit_task(task("b#odd id"))
    store.commit_task(task("grade", 1, seq=2))


@pytest.mark.parametrize("limit", [1, 2, 6, 50])
def test_pages_of_tasks_are_the_fan_in_in_its_order(store: RunStore, limit: int) -> None:
    # Given six tasks of superstep 1 and one of superstep 2
    a_wide_superstep(store)
    # When superstep 1's tasks are read a page at a time
    found = pages(store, 1, limit)
    # Then the pages hold at most `limit` each, and together they are the fan-in, by item
    # index, then node
    assert all(len(page) == min(limit, 6 - limit * i) for i, page in enumerate(found))
    assert [t for page in found for t in page] == in_order(store.list_tasks("r1", 1))
    assert [t.key for page in found for t in page][:3] == ["b#odd id", "grade[0]", "grade[2]"]


def test_a_page_of_a_superstep_without_tasks_is_empty(store: RunStore) -> None:
    store.create_run(run())
    assert store.list_tasks_page("r1", 1, None, 10).items == []
    assert store.list_tasks_page("unknown", 0, None, 10).items == []


def test_a_page_carries_each_task_whole(store: RunStore) -> None:
    # Given tasks with errors and updates
    a_wide_superstep(store, status="failed", error="boom")
    # When one page is read
    page = store.list_tasks_page("r1", 1, None, 2)
    # Then its records are the stored ones, and the cursor goes on after them
    every = in_order(store.list_tasks("r1", 1))
    assert page.items == every[:2] and page.cursor is not None
    assert store.list_tasks_page("r1", 1, page.cursor, 1).items == every[2:3]
