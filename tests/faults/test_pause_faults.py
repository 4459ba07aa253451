"""Pauses through their crash windows, on both carriers, through the real worker on moto (the
fault plan's adapters: tests/faults/fleet.py). Each scenario runs on each carrier and keeps
the protocol's invariants: the run ends as the same answers end it in process (memory
store, no faults), every slot written once by one successful conditional write, each pause
written once and answered once, no hop left, nothing dead-lettered.

==============================  ================================================================
scenario                        what happens
==============================  ================================================================
crash_after_pause               the worker dies just after the pause's commit (window P1 of
                                engine/pauses.py); its redelivery finds the pause and waits
resume_twice                    two identical resumes at once: one answer, both told the same
resume_delivered_twice          the hop the answer sends is delivered twice: the task commits
                                once, its tool never runs
resume_hop_lost                 the answer commits and its hop is lost (window P2): the
                                sweeper finds the slot stalled and sends it
resume_races_cancel             a resume and a cancel at once: the run ends cancelled whichever
                                wins, and a resume that loses is refused (409)
timeout_races_resume            the deadline's held hop and a resume at once: exactly one of
                                them answers, and the run goes where that answer says
parallel_pauses                 two branches pause in one superstep; the run is paused only
                                once both wait, and goes on once both are answered
agent_approval                  an agent whose calculator calls need approval: the worker dies
                                just after the model task's pause (its message held); the
                                redelivery waits, and a per-call answer runs one call and
                                rejects the other (engine/approvals.py)
==============================  ================================================================

Each rule they rely on has a mutation that turns them red: 27-30 in the list of
tests/faults/test_fault_plan.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from engine.errors import ConflictError
from engine.memory import MemoryQueue, MemoryRunStore
from engine.ports import Hop
from engine.service import EngineConfig, RunService
from functions import runtime
from functions.settings import get_settings
from functions.worker import sqs as sqs_worker
from tests.faults.carriers import at_once
from tests.faults.fleet import CaseFleet
from tests.faults.moto_speedups import faster_moto
from tests.faults.plan import CARRIERS, Case, Fault, Shape
from tests.functional.aws_stack import AwsStack, aws_stack

pytestmark = pytest.mark.slow

APPROVAL = {
    "name": "approval",
    "entry": "draft",
    "nodes": {
        "draft": {"tool": "increment", "settings": {"key": "count"}},
        "approve": {
            "interrupt": {"prompt": "Ship it?", "key": "approved", "schema": {"type": "boolean"}}
        },
        "ship": {"tool": "record_visit"},
    },
    "edges": {"draft": "approve", "approve": "ship", "ship": "END"},
}
TIMED = {
    **APPROVAL,
    "name": "approval_timed",
    "nodes": {
        **APPROVAL["nodes"],
        "approve": {
            "interrupt": {
                "prompt": "Ship it?",
                "key": "approved",
                "timeout_s": 3600,
                "on_timeout": "escalate",
            }
        },
        "escalate": {"tool": "set_values", "settings": {"values": {"escalated": True}}},
    },
    "edges": {**APPROVAL["edges"], "escalate": "END"},
}
TWO_BRANCHES = {
    "name": "two_approvals",
    "entry": "draft",
    "nodes": {
        "draft": {"tool": "increment", "settings": {"key": "count"}},
        "legal": {"interrupt": {"prompt": "Legal?", "key": "legal"}},
        "budget": {"interrupt": {"prompt": "Budget?", "key": "budget"}},
        "ship": {"tool": "record_visit"},
    },
    "edges": {"draft": ["legal", "budget"], "ship": "END"},
    "joins": {"ship": ["legal", "budget"]},
}


def _approving_agent() -> dict[str, Any]:
    """The research agent asking before its calculator's calls run."""
    doc = json.loads((Path(__file__).resolve().parents[2] / "examples" / "research_agent.json")
                     .read_text())  # fmt: skip
    doc["name"] = "approving_agent"
    doc["nodes"]["researcher"]["agent"]["approve_tools"] = ["calculator"]
    return doc


APPROVING_AGENT = _approving_agent()

NO_FAULT = Fault("none", "none")


@dataclass(frozen=True)
class Scenario:
    name: str
    doc: dict[str, Any]
    drive: Callable[[Driver], None]
    fault: Fault = NO_FAULT


class Driver:
    """The worker's composition on moto with the fault plan's adapters, and the same graph
    on the engine in process, answered the same way, as the oracle."""

    def __init__(self, stack: AwsStack, carrier: str, scenario: Scenario) -> None:
        case = Case(scenario.fault, carrier, Shape(scenario.name, scenario.doc, {}))
        self.fleet = CaseFleet(stack, case)
        self.service = self.fleet.service
        # A slot left open by a death is swept at once (as the fault plan's lose@... cases);
        # self-invocation cannot hold a hop: the sweeper keeps deadlines (as Dispatch=lambda)
        config = self.service.protocol.config
        self.service.protocol.config = replace(config, lease_s=0.0,
                                               sweeper_delays=carrier == "self_invoke")  # fmt: skip
        self.store = self.fleet.store
        self.stack = stack
        # (the oracle's queue delivers at once: no hop is held for a deadline there)
        self.oracle = RunService(MemoryRunStore(), MemoryQueue(),
                                 runtime.build_tools(get_settings()),
                                 config=EngineConfig(sweeper_delays=True))  # fmt: skip
        self.run_id = self.service.start_run(self.service.create_graph(scenario.doc)[0].graph_id,
                                             {})[0].run_id  # fmt: skip
        self.twin = self.oracle.start_run(self.oracle.create_graph(scenario.doc)[0].graph_id,
                                          {})[0].run_id  # fmt: skip
        self.settle()

    def settle(self) -> None:
        self.fleet.carrier.drive()
        queue = self.oracle.queue
        assert isinstance(queue, MemoryQueue)
        queue.drain(lambda hop: self.oracle.process_hop(hop, "oracle"))

    def resume(self, value: Any, task: str | None = None, *, oracle: bool = True) -> Any:
        if oracle:
            self.oracle.resume_run(self.twin, value, task)
        return self.service.resume_run(self.run_id, value, task)

    def status(self) -> str:
        return self.store.get_run(self.run_id).status

    def check(self, *, oracle: bool = True) -> None:
        run = self.store.get_run(self.run_id)
        if oracle:
            want = self.oracle.store.get_run(self.twin)
            assert (run.status, run.state, run.steps) == (want.status, want.state, want.steps)
        slots = [s.seq for s in self.store.list_steps(self.run_id, limit=1000).items]
        assert slots == list(range(run.steps)), f"slots {slots}"
        closes = {seq: n for (rid, seq), n in self.store.closes.items() if rid == self.run_id}
        assert closes == dict.fromkeys(range(run.steps), 1), f"closes: {closes}"
        tasks = {k: n for k, n in self.store.task_commits.items() if k[0] == self.run_id}
        assert set(tasks.values()) <= {1}, f"a task committed twice: {tasks}"
        pauses = {k: n for k, n in self.store.pause_commits.items() if k[0] == self.run_id}
        assert pauses and set(pauses.values()) == {1}, f"pauses written: {pauses}"
        answers = {k: n for k, n in self.store.answers.items() if k[0] == self.run_id}
        assert set(answers.values()) <= {1}, f"a pause answered twice: {answers}"
        assert self.stack.messages("StepQueue") == [], "hops left on the queue"
        assert self.stack.messages("StepDLQ") == [], "a hop was dead-lettered"


def crash_after_pause(driver: Driver) -> None:
    assert driver.status() == "paused"
    assert driver.fleet.faults.struck == 1
    driver.resume(True)
    driver.settle()


def resume_twice(driver: Driver) -> None:
    runs = at_once([lambda: driver.resume(True, oracle=False)] * 2)
    assert [type(r).__name__ for r in runs] == ["RunRecord", "RunRecord"], runs
    driver.oracle.resume_run(driver.twin, True)
    driver.settle()


def resume_delivered_twice(driver: Driver) -> None:
    driver.resume(False)
    driver.settle()
    assert driver.fleet.faults.struck == 1  # the answer's hop, delivered twice


def resume_hop_lost(driver: Driver) -> None:
    queue = driver.service.protocol.queue
    real = queue.dispatch
    queue.dispatch = lambda hop: None  # type: ignore[method-assign]
    driver.resume(True)
    queue.dispatch = real  # type: ignore[method-assign]
    assert driver.status() == "running"  # answered, and nothing in flight
    for _ in range(3):
        if driver.status() != "running":
            break
        driver.service.sweep()
        driver.settle()


def resume_races_cancel(driver: Driver) -> None:
    outcomes = at_once([lambda: driver.resume(True, oracle=False),
                        lambda: driver.service.cancel_run(driver.run_id)])  # fmt: skip
    assert type(outcomes[1]).__name__ == "RunRecord", outcomes  # a cancel always wins a slot
    driver.settle()
    assert driver.status() == "cancelled"
    if isinstance(outcomes[0], ConflictError):  # the cancel came first
        return
    with pytest.raises(ConflictError):  # answered, then cancelled: no other answer is taken
        driver.resume(False, oracle=False)


def timeout_races_resume(driver: Driver) -> None:
    protocol = driver.service.protocol
    real_clock = protocol.clock
    protocol.clock = lambda: real_clock() + 7200  # type: ignore[method-assign]  # past it
    run = driver.store.get_run(driver.run_id)
    held = Hop(driver.run_id, run.graph_id, run.steps, "approve")  # the deadline's hop
    outcomes = at_once([lambda: driver.resume(True, oracle=False),
                        lambda: driver.service.process_hop(held, "deadline")])  # fmt: skip
    driver.settle()
    protocol.clock = real_clock  # type: ignore[method-assign]
    # (The hop the pause held for its deadline is still on its way, invisible for 900 s:
    # when it comes it finds its task committed and changes nothing.)
    state = driver.store.get_run(driver.run_id).state
    answered = "approved" in state
    assert answered != bool(state.get("escalated")), state  # one answer, one route
    assert answered == (type(outcomes[0]).__name__ == "RunRecord"), outcomes
    driver.oracle.resume_run(driver.twin, True) if answered else _time_out(driver)
    driver.settle()


def _time_out(driver: Driver) -> None:
    oracle = driver.oracle.protocol
    real = oracle.clock
    oracle.clock = lambda: real() + 7200  # type: ignore[method-assign]
    run = driver.oracle.store.get_run(driver.twin)
    driver.oracle.process_hop(Hop(driver.twin, run.graph_id, run.steps, "approve"), "deadline")
    oracle.clock = real  # type: ignore[method-assign]


def parallel_pauses(driver: Driver) -> None:
    assert driver.status() == "paused"
    driver.resume("ok", task="legal")
    driver.settle()
    assert driver.status() == "paused"
    driver.resume(100, task="budget")
    driver.settle()


def agent_approval(driver: Driver) -> None:
    assert driver.status() == "paused"
    assert driver.fleet.faults.struck == 1
    answer = {"calls": {"call_minutes": True, "call_queue": {"approved": False, "reason": "no"}}}
    driver.resume(answer, task="researcher")
    driver.settle()
    state = driver.store.get_run(driver.run_id).state
    assert "A person rejected this tool call" in json.dumps(state["messages"])


SCENARIOS = (
    Scenario(
        "crash_after_pause", APPROVAL, crash_after_pause, Fault("crash", "after_pause_commit", 1)
    ),
    Scenario("resume_twice", APPROVAL, resume_twice),
    Scenario(
        "resume_delivered_twice",
        APPROVAL,
        resume_delivered_twice,
        Fault("duplicate", "delivery", 3),
    ),
    Scenario("resume_hop_lost", APPROVAL, resume_hop_lost),
    Scenario("resume_races_cancel", APPROVAL, resume_races_cancel),
    Scenario("timeout_races_resume", TIMED, timeout_races_resume),
    Scenario("parallel_pauses", TWO_BRANCHES, parallel_pauses),
    Scenario(
        "agent_approval",
        APPROVING_AGENT,
        agent_approval,
        Fault("crash", "after_pause_commit", 1),
    ),
)
CASES = [(s, c) for s in SCENARIOS for c in CARRIERS]


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsStack]:
    monkeypatch.setattr(sqs_worker, "MAX_CONCURRENT_HOPS", 1)
    with faster_moto(), aws_stack(monkeypatch) as s:
        yield s


@pytest.mark.parametrize(("scenario", "carrier"), CASES, ids=[f"{s.name}-{c}" for s, c in CASES])
def test_pauses_keep_the_protocol_invariants(
    stack: AwsStack, scenario: Scenario, carrier: str
) -> None:
    # Given the worker's composition on the carrier, and a run that paused
    driver = Driver(stack, carrier, scenario)
    # When the scenario answers it (and its fault strikes)
    scenario.drive(driver)
    # Then the run ended as in process, each slot and pause written once, nothing left over
    driver.check(oracle=scenario.name != "resume_races_cancel")
