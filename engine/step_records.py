"""A closed superstep's step record, the same for one task or many, and the task summaries it
keeps (the fold builds the same record page by page: :mod:`engine.fold`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from engine.graph import END
from engine.ports import Hop, StepRecord, TaskRecord
from engine.superstep import Closed, TaskResult

if TYPE_CHECKING:  # the protocol imports this module
    from engine.protocol import Origin

MAX_TASK_SUMMARIES = 100
"""Task summaries a step record keeps (failed ones first): 100,000 would pass DynamoDB's
400 KB item limit, and every task has its own record anyway."""


def close_record(
    hop: Hop, origin: Origin, closed: Closed, results: list[TaskResult], started: float,
    attempt: int, delivery_id: str, tasks: list[TaskRecord] | None = None,
) -> StepRecord:  # fmt: skip
    """The step record of a closed superstep, the same for one task or many: ``updates`` are
    the merged values of the keys its tasks wrote (none when it failed: it keeps the state
    before it)."""
    if len(results) == 1:  # every chain step: nothing to sort, join or add up
        (lone,) = results
        failed = None if lone.error is None else lone
        written: Iterable[str] = lone.updates
        node, tool, duration = lone.task.node, lone.tool, lone.duration_ms
    else:
        ordered = sorted(results, key=lambda r: r.task.sort_key())
        failed = next((r for r in ordered if not r.ok), None)
        written = {k for r in ordered for k in r.updates}
        node = ", ".join(sorted({r.task.node for r in ordered})) or hop.node
        tool = ", ".join(sorted({r.tool for r in ordered}))
        duration = sum(r.duration_ms for r in ordered)
    kept = closed.state is origin.state
    updates = {} if kept else {k: closed.state[k] for k in written if k in closed.state}
    end = closed.end
    status = end.status if end is not None else "running"
    nodes = closed.next_nodes
    # The step limit fails the run after a superstep that went fine (it still names what
    # would have run next); any other failure is the superstep's own.
    step_failed = failed is not None or (status == "failed" and not nodes)
    single = len(nodes) == 1 and not tasks and not closed.sends
    summaries, total = task_summaries(tasks) if tasks else ((), 0)
    # Positional, in StepRecord's field order: a record a step, and matching 25 keywords
    # costs more than making the rest of the record.
    return StepRecord(
        hop.run_id,  # run_id
        hop.seq,  # seq
        node,  # node
        tool,  # tool
        "failed" if step_failed else "ok",  # status
        updates,  # updates
        closed.state,  # state
        nodes[0] if single else (END if status == "completed" else None),  # next_node
        started,  # started_at
        duration,  # duration_ms
        end.error if end is not None else None,  # error
        attempt,  # attempt
        delivery_id,  # committed_by
        status,  # run_status
        () if single else nodes,  # next_nodes
        {k: sorted(v) for k, v in closed.joins.items()} if closed.joins else {},  # joins
        summaries,  # tasks
        (),  # notified
        origin.graph_id,  # graph_id
        origin.max_steps,  # max_steps
        origin.breakpoints,  # breakpoints
        total,  # tasks_total
        tuple(s.to_dict() for s in closed.sends) if closed.sends else (),  # sends
        closed.deferred,  # deferred
        results[0].child_run_id if len(results) == 1 and not tasks else None,  # child_run_id
    )


def task_summaries(tasks: list[TaskRecord]) -> tuple[tuple[dict[str, Any], ...], int]:
    """At most ``MAX_TASK_SUMMARIES`` task summaries, failed tasks first, and the total when
    some were left out (0 otherwise)."""
    if not tasks:  # a superstep of one task (every chain step) has no task records
        return (), 0
    ordered = sorted(tasks, key=lambda t: (t.status != "failed", t.node, t.index or 0))
    kept = sorted(ordered[:MAX_TASK_SUMMARIES], key=lambda t: (t.node, t.index or 0))
    total = len(tasks) if len(tasks) > MAX_TASK_SUMMARIES else 0
    return tuple(t.summary() for t in kept), total
