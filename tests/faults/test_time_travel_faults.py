"""Time travel through its crash windows, on both carriers, through the real worker on moto
(the fault plan's adapters: tests/faults/fleet.py). Each scenario of ``SCENARIOS`` runs on
each carrier and keeps the protocol's invariants: every slot written once by one successful
conditional write, the run ends as the same commands end it in process (memory store, no
faults), no hop left, nothing dead-lettered.

==============================  =================================================================
scenario                        what happens
==============================  =================================================================
redrive_twice                   a run its step limit stopped is redriven twice at once (both
                                requests read it failed before either writes): one continuation
fork_dies_then_retry            the process dies between the fork's creation (its header and
                                entry, one write) and its first hop; the client's retry with
                                the same idempotency key sends the hop
fork_dies_then_sweeper          the same death, no retry: the sweeper sends the hop
fork_of_fork                    a fork of a completed run, then a fork of the fork from its own
                                entry (a checkpoint no tool wrote)
==============================  =================================================================

Each rule they rely on has a mutation that turns them red: 10-12 in the list of
tests/faults/test_fault_plan.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest

from engine import history
from engine.history import ForkRequest
from engine.memory import MemoryQueue, MemoryRunStore
from engine.ports import RunRecord
from engine.service import RunService
from functions import runtime
from functions.settings import get_settings
from functions.worker import sqs as sqs_worker
from tests.faults.carriers import at_once
from tests.faults.fleet import CaseFleet
from tests.faults.injection import SimulatedCrash
from tests.faults.moto_speedups import faster_moto
from tests.faults.plan import CARRIERS, LOOP_6, Case, Fault, Shape
from tests.functional.aws_stack import AwsStack, aws_stack

pytestmark = pytest.mark.slow

LIMITED = {**LOOP_6, "name": "loop_6_limited", "max_steps": 4}
"""LOOP_6 stopped by its step limit after 4 supersteps (it needs 6)."""


@dataclass(frozen=True)
class Scenario:
    name: str
    drive: Callable[[Driver], str]
    """Runs the scenario; returns the run whose end is checked."""


class Driver:
    """The worker's composition on moto with the fault plan's adapters (no planned fault),
    and the same graph on the engine in process, as the oracle."""

    def __init__(self, stack: AwsStack, carrier: str) -> None:
        quiet = Case(Fault("none", "none"), carrier, Shape("time_travel", LOOP_6, {}))
        self.fleet = CaseFleet(stack, quiet)
        self.service = self.fleet.service
        # A slot left open by a death is swept at once (as the fault plan's lose@... cases)
        self.service.protocol.config = replace(self.service.protocol.config, lease_s=0.0)
        self.store = self.fleet.store
        self.stack = stack
        self.oracle = RunService(
            MemoryRunStore(), MemoryQueue(), runtime.build_tools(get_settings())
        )
        self.twins: dict[str, str] = {}
        """run id here -> the same run's id in the oracle."""

    def start(self, doc: dict[str, Any]) -> str:
        run_id = self.service.start_run(self.service.create_graph(doc)[0].graph_id, {})[0].run_id
        mirror = self.oracle.start_run(self.oracle.create_graph(doc)[0].graph_id, {})[0].run_id
        self.twins[run_id] = mirror
        self.settle()
        return run_id

    def settle(self) -> None:
        self.fleet.carrier.drive()
        self._drain_oracle()

    def _drain_oracle(self) -> None:
        queue = self.oracle.queue
        assert isinstance(queue, MemoryQueue)
        queue.drain(lambda hop: self.oracle.process_hop(hop, "oracle"))

    def fork(self, run_id: str, request: ForkRequest, *, oracle: bool = True) -> RunRecord:
        run, _ = history.fork_run(self.service, self.store.get_run(run_id), request, "alice")
        if oracle:
            parent = self.oracle.store.get_run(self.twins[run_id])
            mirror, _ = history.fork_run(self.oracle, parent, request, "alice")
            self.twins[run.run_id] = mirror.run_id
        return run

    def check(self, run_id: str, *, forked: bool) -> None:
        run = self.store.get_run(run_id)
        want = self.oracle.store.get_run(self.twins[run_id])
        assert (run.status, run.state, run.steps) == (want.status, want.state, want.steps)
        slots = [s.seq for s in self.store.list_steps(run_id, limit=1000).items]
        assert slots == list(range(run.steps)), f"slots {slots}"
        closes = {seq: n for (rid, seq), n in self.store.closes.items() if rid == run_id}
        first = 1 if forked else 0  # a fork's entry is written with its header
        assert closes == dict.fromkeys(range(first, run.steps), 1), f"closes: {closes}"
        assert self.stack.messages("StepQueue") == [], "hops left on the queue"
        assert self.stack.messages("StepDLQ") == [], "a hop was dead-lettered"


def redrive_twice(driver: Driver) -> str:
    run_id = driver.start(LIMITED)
    assert driver.store.get_run(run_id).status == "failed"
    # Both requests read the run failed before either writes.
    both_read = threading.Barrier(2)
    real = driver.store.get_run

    waited = threading.local()

    def get_run(wanted: str) -> RunRecord:
        found = real(wanted)
        if threading.current_thread() is not threading.main_thread() and not hasattr(
            waited, "once"
        ):
            waited.once = True
            both_read.wait(timeout=10)
        return found

    driver.store.get_run = get_run  # type: ignore[method-assign]
    outcomes = at_once([lambda: history.redrive_run(driver.service, run_id, 20)] * 2)
    driver.store.get_run = real  # type: ignore[method-assign]
    assert sorted(type(o).__name__ for o in outcomes) == ["ConflictError", "RunRecord"]
    history.redrive_run(driver.oracle, driver.twins[run_id], 20)
    driver.settle()
    entries = [s for s in driver.store.list_steps(run_id, limit=1000).items if s.source]
    assert len(entries) == 1, f"redrive entries: {len(entries)}"
    return run_id


def _dies_before_first_hop(driver: Driver, key: str | None) -> RunRecord:
    parent = driver.start(LOOP_6)
    protocol = driver.service.protocol
    real = protocol.dispatch_after

    def dies(*_: Any, **__: Any) -> None:
        raise SimulatedCrash("between the fork's creation and its first hop")

    protocol.dispatch_after = dies  # type: ignore[method-assign]
    request = ForkRequest(1, {"count": 0}, idempotency_key=key)
    with pytest.raises(SimulatedCrash):
        driver.fork(parent, request, oracle=False)
    protocol.dispatch_after = real  # type: ignore[method-assign]
    # A listing carries what lists show (the index's projection): each run is read whole.
    listed = (driver.store.get_run(r.run_id) for r in driver.store.list_runs().items)
    forked = next(r for r in listed if r.parent_run_id == parent)
    assert driver.store.get_run(forked.run_id).steps == 1  # created whole, nothing sent
    mirror, _ = history.fork_run(driver.oracle, driver.oracle.store.get_run(
        driver.twins[parent]), request, "alice")  # fmt: skip
    driver.twins[forked.run_id] = mirror.run_id
    return forked


def fork_dies_then_retry(driver: Driver) -> str:
    forked = _dies_before_first_hop(driver, "retry-me")
    parent = forked.parent_run_id or ""
    again = driver.fork(parent, ForkRequest(1, {"count": 0}, idempotency_key="retry-me"),
                        oracle=False)  # fmt: skip
    assert again.run_id == forked.run_id
    driver.settle()
    return forked.run_id


def fork_dies_then_sweeper(driver: Driver) -> str:
    forked = _dies_before_first_hop(driver, None)
    for _ in range(3):
        if driver.store.get_run(forked.run_id).status != "running":
            break
        driver.service.sweep()
        driver.settle()
    return forked.run_id


def fork_of_fork(driver: Driver) -> str:
    root = driver.start(LOOP_6)
    child = driver.fork(root, ForkRequest(1, {"count": 1}))
    driver.settle()
    grandchild = driver.fork(child.run_id, ForkRequest(0, {}))
    driver.settle()
    # It went on from the child's entry to where the root ended: count 1 -> 3
    done = driver.store.get_run(grandchild.run_id)
    assert done.parent_run_id == child.run_id
    assert (done.status, done.state, done.steps) == (
        "completed",
        driver.store.get_run(root).state,
        5,
    )
    return grandchild.run_id


SCENARIOS = (
    Scenario("redrive_twice", redrive_twice),
    Scenario("fork_dies_then_retry", fork_dies_then_retry),
    Scenario("fork_dies_then_sweeper", fork_dies_then_sweeper),
    Scenario("fork_of_fork", fork_of_fork),
)
CASES = [(s, c) for s in SCENARIOS for c in CARRIERS]


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsStack]:
    monkeypatch.setattr(sqs_worker, "MAX_CONCURRENT_HOPS", 1)
    with faster_moto(), aws_stack(monkeypatch) as s:
        yield s


@pytest.mark.parametrize(("scenario", "carrier"), CASES, ids=[f"{s.name}-{c}" for s, c in CASES])
def test_time_travel_keeps_the_protocol_invariants(
    stack: AwsStack, scenario: Scenario, carrier: str
) -> None:
    # Given the worker's composition on the carrier
    driver = Driver(stack, carrier)
    # When the scenario runs its commands and the carrier delivers every hop
    run_id = scenario.drive(driver)
    # Then the run ended as in process, each slot written once, nothing left over
    driver.check(run_id, forked=scenario.name != "redrive_twice")
