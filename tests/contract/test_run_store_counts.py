"""The RunStore contract of counting runs by status (``count_runs``), for the runs list's
counts: of every run, of one graph, of one owner, and bounded. Every store passes it."""

from __future__ import annotations

from typing import Any, get_args

import pytest
from contract_records import T0, final_step, run

from engine.commands import cancel_run
from engine.ports import RunEnd, RunStatus, RunStore


@pytest.fixture
def counted(store: RunStore) -> RunStore:
    """Nine runs of two graphs and two owners (r0..r8: graph g<i % 2>, owner alice for
    i < 5 else bob): r1, r2 completed, r5 failed, r6, r7 cancelled, the rest running."""
    for i in range(9):
        owner = "alice" if i < 5 else "bob"
        store.create_run(run(f"r{i}", graph_id=f"g{i % 2}", created_at=T0 + i, owner=owner))
    store.commit_step(final_step("r1"), RunEnd("completed"))
    store.commit_step(final_step("r2"), RunEnd("completed"))
    store.commit_step(final_step("r5", status="failed"), RunEnd("failed", "boom"))
    cancel_run(store, "r6", T0 + 60, "stop")
    cancel_run(store, "r7", T0 + 60, "stop")
    return store


def every(**counts: int) -> dict[str, int]:
    return {status: counts.get(status, 0) for status in get_args(RunStatus)}


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, every(running=4, completed=2, failed=1, cancelled=2)),
        ({"graph_id": "g0"}, every(running=3, completed=1, cancelled=1)),  # r0 r2 r4 r6 r8
        ({"graph_id": "g1"}, every(running=1, completed=1, failed=1, cancelled=1)),
        ({"owner": "alice"}, every(running=3, completed=2)),  # r0..r4
        ({"owner": "bob", "graph_id": "g1"}, every(failed=1, cancelled=1)),  # r5 r7
        ({"graph_id": "nope"}, every()),
    ],
)
def test_runs_are_counted_by_status(
    counted: RunStore, filters: dict[str, Any], expected: dict[str, int]
) -> None:
    # When the runs of a filter are counted, Then each status has its count, zeros included
    assert counted.count_runs(**filters) == (expected, True)


@pytest.mark.parametrize("filters", [{}, {"graph_id": "g0"}, {"owner": "alice"}])
def test_counting_stops_at_its_bound_and_says_so(
    counted: RunStore, filters: dict[str, Any]
) -> None:
    # When at most 2 runs may be counted
    counts, exact = counted.count_runs(**filters, up_to=2)
    # Then the counts are not exact, and add up to at least the bound, to no more than exist
    total = sum(counts.values())
    assert not exact and 2 <= total <= sum(counted.count_runs(**filters)[0].values())
