"""One step of a run, as a pure function: the heart both runners share.

``advance`` runs the node's tool on the state, merges its updates, routes, and decides
whether the run goes on, completes or fails (tool error, no route, step limit, state too
large). It touches no store and no queue; the caller commits what it returns.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from engine.errors import ConditionEvaluationError, UnknownToolError
from engine.graph import END, Graph, NoRouteError
from engine.ports import RunEnd, RunStatus, StepRecord, StepStatus
from engine.reducers import ReducerError
from engine.superstep import Task, merge_updates, state_size
from engine.tools import ToolContext, ToolError, Toolkit, bounded_text, call_tool


@dataclass(frozen=True, slots=True)
class Limits:
    max_steps: int
    state_limit_bytes: int | None = None
    """``None``: no size check (the in-process runner skips serialising each state)."""


COMPLETED = RunEnd("completed")


@dataclass(frozen=True, slots=True)
class StepOutcome:
    step: StepRecord
    end: RunEnd | None
    """Set when this step ends the run (completed or failed)."""

    @property
    def next_node(self) -> str | None:
        return None if self.end is not None else self.step.next_node


def advance(
    graph: Graph,
    tools: Toolkit,
    node: str,
    state: dict[str, Any],
    ctx: ToolContext,
    limits: Limits,
    now: float,
) -> StepOutcome:
    """Run ``node`` on ``state`` as step ``ctx.step`` and decide what comes next."""
    spec = graph.nodes[node]
    tool_name = spec.tool
    if spec.settings:
        ctx = replace(ctx, settings=spec.settings)
    record = _Recorder(ctx, node, tool_name, now, time.perf_counter())
    try:
        updates = call_tool(tools.get(tool_name), MappingProxyType(state), ctx)
    except (ToolError, UnknownToolError) as exc:
        return record.failed(str(exc), state)
    try:
        new_state = merge_updates(graph, state, [(Task(node), updates)]) if updates else state
    except ReducerError as exc:
        return record.failed(f"merging the updates of node {node!r} failed: {exc}", state, updates)
    # Size before routing: a routing failure records the new state, which must fit too.
    if limits.state_limit_bytes is not None:
        size = state_size(new_state)
        if size > limits.state_limit_bytes:
            reason = (
                f"state after node {node!r} would be {size} bytes serialized, above the limit "
                f"of {limits.state_limit_bytes}; the last committed state is kept"
            )
            return record.failed(reason, state, updates={})
    try:
        nxt = graph.next_node(node, new_state)
    except (ConditionEvaluationError, NoRouteError) as exc:
        return record.failed(f"routing after node {node!r} failed: {exc}", new_state, updates)
    if nxt == END:
        return StepOutcome(record.step("ok", updates, new_state, nxt, "completed"), COMPLETED)
    if ctx.step + 1 >= limits.max_steps:
        reason = (
            f"step limit reached: {limits.max_steps} steps ran without reaching END "
            f"(the next node would have been {nxt!r}); raise max_steps or check the loop"
        )
        step = record.step("ok", updates, new_state, nxt, "failed")
        return StepOutcome(step, RunEnd("failed", reason))
    return StepOutcome(record.step("ok", updates, new_state, nxt), None)


@dataclass(frozen=True, slots=True)
class _Recorder:
    """Builds the step record of one ``advance`` call."""

    ctx: ToolContext
    node: str
    tool: str
    now: float
    started: float

    def step(
        self,
        status: StepStatus,
        updates: dict[str, Any],
        state: dict[str, Any],
        nxt: str | None,
        run_status: RunStatus = "running",
        error: str | None = None,
    ) -> StepRecord:
        return StepRecord(
            run_id=self.ctx.run_id,
            seq=self.ctx.step,
            node=self.node,
            tool=self.tool,
            status=status,
            updates=updates,
            state=state,
            next_node=nxt,
            started_at=self.now,
            duration_ms=round((time.perf_counter() - self.started) * 1000, 3),
            error=error,
            attempt=self.ctx.attempt,
            run_status=run_status,
        )

    def failed(
        self, reason: str, state: dict[str, Any], updates: dict[str, Any] | None = None
    ) -> StepOutcome:
        reason = bounded_text(reason)  # the step item and the run header both store it
        step = self.step("failed", updates or {}, state, None, "failed", reason)
        return StepOutcome(step, RunEnd("failed", reason))
