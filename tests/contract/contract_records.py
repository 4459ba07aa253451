"""Records and helpers shared by the contract tests (a plain module: conftest is not imported
by tests, as every tier has its own)."""

from __future__ import annotations

from typing import Any

from engine.ports import Connection, GraphRecord, RunRecord, RunStore, StepRecord

T0 = 1_700_000_000.25
"""The pinned "now" of every test (an exact binary fraction, so it round-trips as text)."""


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def graph(graph_id: str = "g1", created_at: float = T0) -> GraphRecord:
    definition = {"name": "review", "entry": "a", "nodes": {"a": {"tool": "t"}}, "edges": {}}
    return GraphRecord(graph_id, "review", definition, created_at, owner="alice")


def run(
    run_id: str = "r1", graph_id: str = "g1", created_at: float = T0, **fields: Any
) -> RunRecord:
    doc: dict[str, Any] = {
        "run_id": run_id,
        "graph_id": graph_id,
        "status": "running",
        "input": {"code": "def f(): pass"},
        "max_steps": 20,
        "created_at": created_at,
        "updated_at": created_at,
        "node": "a",
    }
    return RunRecord(**{**doc, **fields})


def step(run_id: str = "r1", seq: int = 0, **fields: Any) -> StepRecord:
    doc: dict[str, Any] = {
        "run_id": run_id,
        "seq": seq,
        "node": "a",
        "tool": "t",
        "status": "ok",
        "updates": {"n": seq},
        "state": {"code": "def f(): pass", "n": seq},
        "next_node": "a",
        "started_at": T0 + seq + 1,
        "duration_ms": 1.5,
        "committed_by": f"delivery-{seq}",
    }
    return StepRecord(**{**doc, **fields})


def final_step(run_id: str = "r1", seq: int = 0, status: str = "completed") -> StepRecord:
    return step(run_id, seq, next_node=None, run_status=status)


def commit_steps(store: RunStore, run_id: str, count: int) -> list[StepRecord]:
    steps = [step(run_id, seq) for seq in range(count)]
    for each in steps:
        store.commit_step(each)
    return steps


RUN_LISTED = ("run_id", "graph_id", "status", "error", "owner", "created_at", "updated_at")
"""What a run listing shows (the API's RunSummary): a listed run carries these as they are."""
GRAPH_LISTED = ("graph_id", "name", "owner", "created_at")
"""What a graph listing shows (the API's GraphSummary, and the owner)."""


def listed(record: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    """The fields of ``record`` a listing shows."""
    return {name: getattr(record, name) for name in fields}


def walk(fetch: Any, limit: int) -> list[list[Any]]:
    """Every page of a paginated listing, following cursors until there are none."""
    pages, cursor = [], None
    for _ in range(100):
        page = fetch(limit=limit, cursor=cursor)
        pages.append(page.items)
        cursor = page.cursor
        if cursor is None:
            return pages
    raise AssertionError("pagination does not end")


def connection(connection_id: str, expires_at: int = int(T0) + 3600) -> Connection:
    return Connection(connection_id, f"https://ws.example/{connection_id}", expires_at)
