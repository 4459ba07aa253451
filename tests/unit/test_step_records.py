"""A closed superstep's step record (engine/step_records.py) names each of its fields from the
right source: it is built positionally, for speed, so a field out of place must show here."""

from __future__ import annotations

from types import MappingProxyType

from engine.ports import Audience, Hop, RunEnd
from engine.protocol import Origin
from engine.step_records import close_record
from engine.superstep import Closed, Plan, Task, TaskResult
from engine.tools import Send

STATE = {"n": 1}


def _origin() -> Origin:
    plan = Plan(MappingProxyType({"a": None}))
    return Origin(dict(STATE), MappingProxyType({}), plan, "graph-1", 77, 5.0, Audience(),
                  (), {"before": ["b"]})  # fmt: skip


def test_a_chain_steps_record_takes_each_field_from_its_source() -> None:
    # Given a superstep of one task that routed to one node
    hop = Hop("run-1", "graph-1", 3, "a")
    result = TaskResult(Task("a"), "tool-a", {"n": 2}, ("b",), 1.5, child_run_id="child-1")
    closed = Closed({"n": 2}, ("b",), MappingProxyType({"j": frozenset({"a"})}))
    # When its step record is made
    step = close_record(hop, _origin(), closed, [result], 10.0, 2, "delivery-1")
    # Then every field says what it should
    assert (step.run_id, step.seq, step.node, step.tool) == ("run-1", 3, "a", "tool-a")
    assert (step.status, step.updates, step.state) == ("ok", {"n": 2}, {"n": 2})
    assert (step.next_node, step.next_nodes) == ("b", ())
    assert (step.started_at, step.duration_ms, step.error) == (10.0, 1.5, None)
    assert (step.attempt, step.committed_by, step.run_status) == (2, "delivery-1", "running")
    assert (step.joins, step.tasks, step.notified) == ({"j": ["a"]}, (), ())
    assert (step.graph_id, step.max_steps, step.breakpoints) == ("graph-1", 77, {"before": ["b"]})
    assert (step.tasks_total, step.sends, step.deferred) == (0, (), ())
    assert (step.child_run_id, step.source) == ("child-1", "")


def test_a_step_that_ends_its_run_records_the_end_and_what_was_sent() -> None:
    # Given a superstep of two tasks, one of which sent an item, that fails the run
    hop = Hop("run-1", "graph-1", 4, "b", parallel=True)
    results = [
        TaskResult(Task("b"), "tool-b", {}, (), 1.0, "it broke"),
        TaskResult(Task("a"), "tool-a", {"n": 3}, (), 2.0, sends=(Send("c", {"k": 1}),)),
    ]
    closed = Closed(dict(STATE), ("c",), end=RunEnd("failed", "task 'b': it broke"),
                    sends=(Send("c", {"k": 1}),), deferred=("d",))  # fmt: skip
    # When its step record is made
    step = close_record(hop, _origin(), closed, results, 10.0, 1, "delivery-2")
    # Then it is failed, names both tasks, and keeps what the close decided
    assert (step.node, step.tool, step.duration_ms) == ("a, b", "tool-a, tool-b", 3.0)
    assert (step.status, step.run_status, step.error) == ("failed", "failed", "task 'b': it broke")
    assert (step.next_node, step.next_nodes) == (None, ("c",))
    assert step.sends == ({"node": "c", "payload": {"k": 1}},)
    assert (step.deferred, step.child_run_id) == (("d",), None)
