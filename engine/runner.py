"""The in-process runner: a graph run to the end in a plain loop.

It is the reference every distributed run is compared against, and what
``hopgraph run FILE --local`` uses. It calls the same :func:`~engine.step.advance` as the
worker, records every step in a store when given one, and emits the same events.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.errors import InvalidInputError
from engine.events import run_event, step_event
from engine.graph import Graph
from engine.ports import Clock, RunRecord, RunStatus, RunStore, StepRecord
from engine.step import Limits, advance
from engine.superstep_runner import SuperstepLoop
from engine.tools import ToolContext, Toolkit

EventSink = Callable[[dict[str, Any]], None]
DEFAULT_MAX_STEPS = 100
_EVENT_ONLY = frozenset({"type", "run_id", "ts"})


@dataclass(frozen=True, slots=True)
class RunResult:
    run_id: str
    status: RunStatus
    state: dict[str, Any]
    steps: int
    error: str | None = None
    log: list[dict[str, Any]] = field(default_factory=list)
    """The execution log (empty when the runner records nothing)."""


class InProcessRunner:
    """Runs graphs synchronously in this process.

    ``store``: record the run and each step (the execution log); ``None`` records nothing.
    ``on_event``: receives every step and run event as the WebSocket would carry it.
    """

    def __init__(
        self,
        tools: Toolkit,
        *,
        store: RunStore | None = None,
        on_event: EventSink | None = None,
        clock: Clock = time.time,
        state_limit_bytes: int | None = None,
    ) -> None:
        self.tools = tools
        self.store = store
        self.on_event = on_event
        self.clock = clock
        self.state_limit_bytes = state_limit_bytes

    def run(
        self,
        graph: Graph,
        input: dict[str, Any] | None = None,
        *,
        max_steps: int | None = None,
        run_id: str | None = None,
        graph_id: str = "local",
    ) -> RunResult:
        run_id = run_id or "r_" + uuid.uuid4().hex[:24]
        limit = max_steps or graph.max_steps or DEFAULT_MAX_STEPS
        limits = Limits(limit, self.state_limit_bytes)
        state = graph.start_state(input or {})
        if not graph.is_chain:
            return self._run_supersteps(run_id, graph, graph_id, state, limit)
        self._start(run_id, graph, graph_id, state, limit)
        node, seq = graph.entry, 0
        while True:
            outcome = advance(
                graph, self.tools, node, state, ToolContext(run_id, node, seq), limits,
                self.clock(),
            )  # fmt: skip
            step, end = outcome.step, outcome.end
            if self.store is not None:
                self.store.commit_step(step, end)
            if self.on_event is not None:
                self._emit_step(step, end)
            state = step.state
            if end is not None:
                return self._result(run_id, end.status, state, seq + 1, end.error)
            node, seq = step.next_node, seq + 1  # type: ignore[assignment]

    def _run_supersteps(
        self, run_id: str, graph: Graph, graph_id: str, state: dict[str, Any], limit: int
    ) -> RunResult:
        """A graph with parallel work: its supersteps' tasks run concurrently. The log holds
        one entry per task (``seq`` is the superstep; ``task`` names it)."""
        if self.store is not None:
            raise InvalidInputError(
                "recording a run with parallel work (fan-out, map, join) in a store is not "
                "supported yet; run it with store=None (the result carries its log)"
            )
        self._start(run_id, graph, graph_id, state, limit)
        loop = SuperstepLoop(
            graph, self.tools, run_id, limit, self.state_limit_bytes, self.clock, self.on_event
        )
        done = loop.run(state)
        if self.on_event is not None:
            final = done.state if done.end.status == "completed" else None
            self.on_event(run_event(run_id, done.end.status, self.clock(), state=final,
                                    reason=done.end.error, steps=done.supersteps))  # fmt: skip
        log = [{k: v for k, v in e.items() if k not in _EVENT_ONLY} for e in done.log]
        return RunResult(run_id, done.end.status, done.state, done.supersteps, done.end.error, log)

    def _start(
        self, run_id: str, graph: Graph, graph_id: str, state: dict[str, Any], limit: int
    ) -> None:
        now = self.clock()
        if self.store is not None:
            header = RunRecord(
                run_id, graph_id, "running", state, limit, now, now, node=graph.entry
            )
            self.store.create_run(header)
        if self.on_event is not None:
            self.on_event(run_event(run_id, "running", now, steps=0))

    def _emit_step(self, step: StepRecord, end: Any) -> None:
        assert self.on_event is not None
        now = self.clock()
        self.on_event(step_event(step, now))
        if end is not None:
            state = step.state if end.status == "completed" else None
            self.on_event(
                run_event(step.run_id, end.status, now, state=state, reason=end.error,
                          steps=step.seq + 1)
            )  # fmt: skip

    def _result(
        self, run_id: str, status: RunStatus, state: dict[str, Any], steps: int, error: str | None
    ) -> RunResult:
        log: list[dict[str, Any]] = []
        if self.store is not None:
            log = [s.log_entry() for s in self.store.list_steps(run_id, limit=steps + 1).items]
        return RunResult(run_id, status, state, steps, error, log)
