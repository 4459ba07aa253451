"""The ``map_width`` quota: a start over it is refused before the run exists; a run that
plans a wider superstep later fails with a reason naming the quota (engine/map_quota.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.errors import MapTooWide, transport_of
from engine.memory import MemoryQueue, MemoryRunStore
from engine.service import EngineConfig, RunService
from engine.toolkits.basics import toolkit as basics

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MAP_AT_ENTRY = json.loads((EXAMPLES / "langgraph/map_reduce.json").read_text())
# A map after a first step, over a list that step writes: its width is known only then.
MAP_LATER: dict[str, Any] = {
    "entry": "split",
    "state": {"graded": {"reducer": "append"}},
    "nodes": {
        "split": {"tool": "emit", "settings": {"key": "docs", "value": [1, 2, 3, 4, 5]}},
        "grade": {"tool": "fill", "settings": {"key": "graded", "template": "doc $doc"},
                  "map": {"over": "docs", "as": "doc"}},
    },
    "edges": {"split": "grade", "grade": "END"},
}  # fmt: skip


def service(width: int) -> tuple[RunService, MemoryRunStore, MemoryQueue]:
    store, queue = MemoryRunStore(), MemoryQueue()
    config = EngineConfig(max_map_width=width)
    return RunService(store, queue, basics, config=config), store, queue


def drain(svc: RunService, queue: MemoryQueue) -> None:
    for n in range(1_000):
        if not queue.hops:
            return
        svc.process_hop(queue.hops.popleft(), f"m{n}")
    raise AssertionError("hops do not end")


def test_a_map_at_the_entry_wider_than_the_quota_is_refused_before_the_run_exists() -> None:
    # Given a quota of 3 tasks per superstep
    svc, store, queue = service(3)
    graph_id = svc.create_graph(MAP_AT_ENTRY)[0].graph_id
    # When a run maps over four subjects
    with pytest.raises(MapTooWide) as refused:
        svc.start_run(graph_id, {"subjects": ["a", "b", "c", "d"]})
    # Then it is a 429 naming the quota, parked on a queue (it would fail the same way again)
    error = refused.value
    assert (error.quota, error.limit, error.width) == ("map_width", 3, 4)
    row = transport_of(error)
    assert (row.status, row.type, row.disposition) == (429, "quota_exceeded", "park")
    assert "map node 'generate_joke' over 4 items" in str(error) and "MaxMapWidth" in str(error)
    # And nothing was created or sent
    assert store.list_runs().items == [] and not queue.hops
    # And a map of three runs to the end
    run, _ = svc.start_run(graph_id, {"subjects": ["a", "b", "c"]})
    drain(svc, queue)
    assert store.get_run(run.run_id).status == "completed"


def test_a_run_that_plans_a_wider_superstep_fails_naming_the_quota() -> None:
    # Given a quota of 4, and a graph whose second superstep maps over five items
    svc, store, queue = service(4)
    run, _ = svc.start_run(svc.create_graph(MAP_LATER)[0].graph_id, {})
    # When its hops are delivered
    drain(svc, queue)
    # Then the run failed at the close that planned the map, and no map task was sent
    final = store.get_run(run.run_id)
    assert final.status == "failed" and final.steps == 1
    assert final.error is not None and "quota map_width exceeded" in final.error
    assert "map node 'grade' over 5 items" in final.error


@pytest.mark.parametrize("width", [0, 5])
def test_at_or_without_the_quota_the_map_runs(width: int) -> None:
    svc, store, queue = service(width)
    run, _ = svc.start_run(svc.create_graph(MAP_LATER)[0].graph_id, {})
    drain(svc, queue)
    final = store.get_run(run.run_id)
    assert final.status == "completed" and len(final.state["graded"]) == 5
