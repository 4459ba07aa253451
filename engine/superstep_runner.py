"""The in-process loop for graphs with parallel work (fan-out, map, join).

Each superstep's tasks run concurrently on threads (an async tool gets the thread's own event
loop, see :func:`engine.tools.call_tool`), a map node's tasks at most ``max_concurrency`` at
a time; the superstep closes when all are done (:func:`engine.superstep.close_superstep`).
A superstep of one task runs on the calling thread: a chain pays nothing for this.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from engine.events import iso
from engine.graph import Graph
from engine.ports import RunEnd
from engine.reducers import ReducerError
from engine.superstep import (
    NO_JOINS,
    Plan,
    Task,
    TaskResult,
    close_superstep,
    merge_key,
    plan_of,
    run_task,
)
from engine.tools import Send, ToolContext, Toolkit

MAX_THREADS = 64
"""Threads one superstep may use; map caps (``max_concurrency``) apply within them."""

EventSink = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class LoopResult:
    state: dict[str, Any]
    end: RunEnd
    supersteps: int
    log: list[dict[str, Any]]


def task_entry(run_id: str, superstep: int, result: TaskResult, ts: float) -> dict[str, Any]:
    """A committed task as the execution log and step events show it."""
    entry: dict[str, Any] = {
        "type": "step",
        "run_id": run_id,
        "ts": iso(ts),
        "seq": superstep,
        "task": result.task.key,
        "node": result.task.node,
        "tool": result.tool,
        "status": "ok" if result.ok else "failed",
        "updates": result.updates,
        "duration_ms": result.duration_ms,
        "next": list(result.targets),
    }
    if result.task.index is not None:
        entry["index"] = result.task.index
    if result.error is not None:
        entry["error"] = result.error
    return entry


@dataclass
class SuperstepLoop:
    """Runs one graph to its end, superstep by superstep."""

    graph: Graph
    tools: Toolkit
    run_id: str
    max_supersteps: int
    state_limit_bytes: int | None
    clock: Callable[[], float]
    on_event: EventSink | None = None

    def run(self, state: dict[str, Any]) -> LoopResult:
        nodes: tuple[str, ...] = (self.graph.entry,)
        sends: tuple[Send, ...] = ()
        deferred: tuple[str, ...] = ()
        joins = NO_JOINS
        log: list[dict[str, Any]] = []
        superstep = 0
        while True:
            try:
                plan = plan_of(self.graph, nodes, state, sends)
            except ReducerError as exc:
                return LoopResult(state, RunEnd("failed", str(exc)), superstep, log)
            results = self._run_tasks(list(plan), state, superstep, plan)
            closed = close_superstep(
                self.graph, state, joins, results, superstep, self.max_supersteps,
                self.state_limit_bytes, deferred,
            )  # fmt: skip
            self._record(superstep, results, log)
            if closed.end is not None:
                return LoopResult(closed.state, closed.end, superstep + 1, log)
            state, nodes, joins = closed.state, closed.next_nodes, closed.joins
            sends, deferred = closed.sends, closed.deferred
            superstep += 1

    def _run_tasks(
        self, tasks: Sequence[Task], state: dict[str, Any], superstep: int, plan: Plan
    ) -> list[TaskResult]:
        caps = self._map_caps(tasks)
        gates = {node: threading.Semaphore(cap) for node, cap in caps.items()}

        def one(task: Task) -> TaskResult:
            ctx = ToolContext(self.run_id, task.node, superstep)
            gate = gates.get(task.node)
            if gate is None:
                return run_task(self.graph, self.tools, task, state, ctx, plan)
            with gate:
                return run_task(self.graph, self.tools, task, state, ctx, plan)

        if len(tasks) <= 1:
            return [one(task) for task in tasks]
        # No more threads than can run at once: a capped map's extra tasks would only wait.
        width = sum(caps.values()) + sum(1 for t in tasks if t.node not in caps)
        with ThreadPoolExecutor(min(width, MAX_THREADS), "superstep") as pool:
            return list(pool.map(one, tasks))

    def _map_caps(self, tasks: Sequence[Task]) -> dict[str, int]:
        """``max_concurrency`` of each capped map node of this superstep (at most its tasks)."""
        caps: dict[str, int] = {}
        for node in {t.node for t in tasks}:
            spec = self.graph.nodes[node].map
            if spec is not None and spec.max_concurrency is not None:
                count = sum(1 for t in tasks if t.node == node)
                caps[node] = min(spec.max_concurrency, count)
        return caps

    def _record(self, superstep: int, results: list[TaskResult], log: list[dict[str, Any]]) -> None:
        now = self.clock()
        for result in sorted(results, key=lambda r: merge_key(self.graph, r.task)):
            entry = task_entry(self.run_id, superstep, result, now)
            log.append(entry)
            if self.on_event is not None:
                self.on_event(entry)
