"""A child's last hop and its parent's deadline hop delivered at the same moment, to two
workers at once, on both carriers, through the worker's composition on moto (the fault
plan's adapters: tests/faults/fleet.py).

Whichever wins the child's slot (its last close, or the deadline's cancel), the child ends
completed or cancelled, never both and never left running, and the parent's task is
committed once: with the child's result, or with the ``TimeoutError`` that takes its error
route (engine/subgraph_timeouts.py). Each case decides who wins: both writes into the
child's slot reach the store (both workers read the child running), and the winner's
commits first, so that the loser's conditional write is the one that fails.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from engine.ports import Hop
from engine.subgraphs import CHILD_PREFIX, child_run_id
from functions.worker import sqs as sqs_worker
from tests.faults.carriers import at_once
from tests.faults.fleet import CaseFleet
from tests.faults.moto_speedups import faster_moto
from tests.faults.plan import CARRIERS, Case, Fault, Shape
from tests.functional.aws_stack import AwsStack, aws_stack

pytestmark = pytest.mark.slow

TIMEOUT_S = 30
QUICK_CHILD = {
    "name": "quick child",
    "entry": "x",
    "nodes": {"x": {"tool": "set_values", "settings": {"values": {"done": True}}}},
    "edges": {"x": "END"},
}
TIMED_PARENT = {
    "name": "timed parent",
    "entry": "start",
    "nodes": {
        "start": {"tool": "record_visit"},
        "wait": {"graph": "quick child", "output": {"done": "done"}, "timeout_s": TIMEOUT_S,
                 "on_error": "sorry"},
        "sorry": {"tool": "set_values", "settings": {"values": {"apologised": True}}},
    },
    "edges": {"start": "wait", "wait": "END", "sorry": "END"},
}  # fmt: skip


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsStack]:
    monkeypatch.setattr(sqs_worker, "MAX_CONCURRENT_HOPS", 1)
    with faster_moto(), aws_stack(monkeypatch) as s:
        yield s


def both_in_flight(fleet: CaseFleet, child_id: str, winner: str) -> None:
    """The child's slot written by both: its last close and the timeout's cancel each reach
    the store (each having read the child running), and ``winner``'s (``child``: the close;
    ``deadline``: the cancel) commits first, the other's after it."""
    commit = fleet.store.commit_step
    arrived, committed = threading.Event(), threading.Event()

    def commit_step(step: Any, end: Any = None) -> None:
        if step.run_id != child_id:
            return commit(step, end)
        if (step.status == "cancelled") == (winner == "deadline"):
            assert arrived.wait(30), "the loser never reached the child's slot"
            try:
                return commit(step, end)
            finally:
                committed.set()
        arrived.set()
        assert committed.wait(30), "the winner never wrote the child's slot"
        return commit(step, end)

    fleet.store.commit_step = commit_step  # type: ignore[method-assign]


@pytest.mark.parametrize("winner", ["child", "deadline"])
@pytest.mark.parametrize("carrier", CARRIERS)
def test_a_childs_last_hop_racing_its_deadline_ends_the_child_once(
    stack: AwsStack, carrier: str, winner: str
) -> None:
    # Given a parent whose task waits on a child, the child's only hop held back until the
    # deadline passed
    shape = Shape("deadline_race", TIMED_PARENT, {}, parallel=False, children=(QUICK_CHILD,),
                  deadline_s=TIMEOUT_S + 1)  # fmt: skip
    fleet = CaseFleet(stack, Case(Fault("none", "none"), carrier, shape))
    service = fleet.service
    queue: Any = service.protocol.queue
    send = queue.dispatch
    held_back: list[Hop] = []
    queue.dispatch = lambda hop: (held_back.append(hop) if hop.run_id.startswith(CHILD_PREFIX)
                                  else send(hop))  # fmt: skip
    service.create_graph(QUICK_CHILD)
    graph_id = service.create_graph(TIMED_PARENT)[0].graph_id
    run_id = service.start_run(graph_id, {})[0].run_id
    fleet.carrier.drive()
    queue.dispatch = send
    child_id = child_run_id(run_id, 1, "wait")
    assert [h.run_id for h in held_back] == [child_id]
    assert fleet.store.get_run(child_id).status == "running"
    # When, past the deadline, the child's hop and the parent's deadline hop reach two
    # workers at the same time, and the winner's write into the child's slot comes first
    # (the child's worker dying after its close, before it tells the parent: the deadline's
    # worker, whatever its cancel found, is the one that tells it)
    both_in_flight(fleet, child_id, winner)
    subgraphs = service.protocol.subgraphs
    ended = subgraphs.ended
    subgraphs.ended = lambda run_id: None  # type: ignore[method-assign]
    fleet.offset += TIMEOUT_S + 1
    deadline = Hop(run_id, graph_id, 1, "wait")
    outcomes = at_once([lambda: service.process_hop(held_back[0], "child-hop"),
                        lambda: service.process_hop(deadline, "deadline-hop")])  # fmt: skip
    subgraphs.ended = ended  # type: ignore[method-assign]
    assert not [o for o in outcomes if isinstance(o, BaseException)], outcomes
    fleet.carrier.drive()
    # Then the child ended once, as the winner ended it, and the parent's task went by it
    child = fleet.store.get_run(child_id)
    run = fleet.store.get_run(run_id)
    assert child.status == {"child": "completed", "deadline": "cancelled"}[winner]
    assert run.status == "completed", (run.status, run.error)
    if winner == "child":
        assert (run.state.get("done"), "error" in run.state) == (True, False), run.state
    else:
        assert run.state["error"]["type"] == "TimeoutError", run.state
        assert run.state["apologised"] is True
    for rid, steps in ((child_id, 1), (run_id, run.steps)):
        closes = {seq: n for (r, seq), n in fleet.store.closes.items() if r == rid}
        assert closes == dict.fromkeys(range(steps), 1), f"{rid} closes: {closes}"
    tasks = {k: n for k, n in fleet.store.task_commits.items() if k[0] == run_id}
    assert set(tasks.values()) <= {1}, f"a task committed twice: {tasks}"
    assert stack.messages("StepDLQ") == [], "a hop was dead-lettered"
