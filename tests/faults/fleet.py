"""One case of the fault plan on moto: the worker's service built over the faulty adapters,
one run of the case's shape driven through the case's carrier, and the invariants checked
against the in-process runner's run of the same graph and input.

The invariants (:meth:`CaseFleet.check`): the run ended as the in-process runner's did
(status, final state, superstep count, error); every task of a superstep of several
committed exactly once and they are the runner's; every superstep closed exactly once (a
successful conditional write per slot, counted by the store wrapper); a subscriber saw the
supersteps in order (and a client that subscribed in a commit's window got every one); no
hop is left and nothing was dead-lettered; the fault struck once.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import replace
from typing import Any

from engine.ports import Connection, Hop
from engine.runner import InProcessRunner, RunResult
from engine.service import RunService
from engine.subgraphs import CHILD_PREFIX
from engine.tools import load_toolkits
from engine.validation import build_graph
from functions import runtime
from functions.aws.dispatch import SELF_INVOKE_MARKER, SqsStepQueue
from functions.aws.dynamodb_store import DynamoRunStore
from functions.deadletter.handler import handle_batch
from functions.settings import get_settings
from infra.stack.event_source import SqsEventSource
from tests.faults.carriers import WORKER, SelfInvokeCarrier, SqsCarrier
from tests.faults.injection import (
    FaultySqsDispatch,
    FaultyStore,
    FaultyTools,
    Injector,
    InTestInvoke,
    RecordingNotifier,
)
from tests.faults.plan import Case
from tests.functional.aws_stack import TABLE, AwsStack

LATE = "late-subscriber="
CHILD_ID = re.compile(CHILD_PREFIX + "[0-9a-f]{24}")


def _ids_out(value: Any) -> Any:
    """``value`` (a state, an error) with child run ids left out: they derive from the run's
    own id, which the in-process run does not share (a failed child's reason names it)."""
    return json.loads(CHILD_ID.sub(CHILD_PREFIX + "*", json.dumps(value, sort_keys=True)))


def twin(doc: dict[str, Any]) -> dict[str, Any]:
    """The same graph shape under other tools: every node sets ``hijacked``. A hop naming it
    for a run of ``doc`` is a forgery (its id differs, its node names do not)."""
    mine = ("settings", "graph", "input", "output")
    nodes = {
        name: {**{k: v for k, v in node.items() if k not in mine}, "tool": "set_values",
               "settings": {"values": {"hijacked": True}}}
        for name, node in doc["nodes"].items()
    }  # fmt: skip
    return {**doc, "name": f"twin of {doc.get('name', 'graph')}", "nodes": nodes}


class CaseFleet:
    def __init__(self, stack: AwsStack, case: Case) -> None:
        self.stack = stack
        self.case = case
        self.faults = Injector(case.fault, case.nth)
        settings = get_settings()
        # The deployment's toolkits, and the LangGraph ports' routers and tools (the shapes
        # with items sent and subgraphs are ports).
        self.tools = load_toolkits([*settings.toolkit_modules, "examples.langgraph.toolkit"])
        self.store = FaultyStore(DynamoRunStore(TABLE, stack.dynamodb), self.faults)
        self.notifier = RecordingNotifier()
        self.offset = 0.0
        """How far the case's clock has been moved on (a shape with deadlines: plan.py)."""
        self.held: list[tuple[float, Hop]] = []
        """SQS hops held for a time, and when each is due (on the case's clock)."""
        queue: Any
        if case.carrier == "sqs":
            # Sent in order, so that each case replays the same way.
            sqs = SqsStepQueue(stack.urls["StepQueue"], stack.sqs, sends_at_once=1)
            self.sqs = sqs
            hold = self._hold if case.shape.deadline_s is not None else None
            queue = FaultySqsDispatch(sqs, self.faults, hold)
            self.carrier: Any = SqsCarrier(stack.sqs, stack.urls["StepQueue"], self.faults)
        else:
            queue = InTestInvoke(self.faults, WORKER)
            self.carrier = SelfInvokeCarrier(queue, self.faults)
        self.faulty_tools = FaultyTools(self.tools, self.faults)
        self.service = RunService(
            self.store,
            queue,
            self.faulty_tools,  # type: ignore[arg-type]
            notifier=self.notifier,
            clock=self.clock,
            config=self._engine_config(settings),
        )
        self.faults.on_subscribe = self._subscribe_late
        self.faults.on_forge = self._forge
        self._tell_twice(self.service.protocol.subgraphs)
        self.cancel_answered: int | None = None
        """The Injector's mark taken once the cancel answered (None: no cancel yet)."""
        runtime.install(self.service)
        stack.dynamodb.meta.events.register("before-call.dynamodb", self.faults.throttle_hook)
        self.run_id = ""

    def _engine_config(self, settings: Any) -> Any:
        config = runtime.engine_config(settings)
        above = self.case.shape.counted_fan_in_above
        if above is not None:
            config = replace(config, counted_fan_in_above=above)
        if self.case.shape.fold is not None:
            above, page = self.case.shape.fold
            config = replace(config, fold_above=above, fold_page=page)
        if self.case.fault.kind == "lose":  # the sweeper runs once the carrier is idle
            config = replace(config, lease_s=0)
        if self.case.shape.deadline_s is not None and self.case.carrier == "self_invoke":
            config = replace(config, sweeper_delays=True)  # no hop can be held
        return config

    def clock(self) -> float:
        """The case's clock: the real one, moved on by the fleet (:meth:`_pass_time`)."""
        return time.time() + self.offset

    def _hold(self, hop: Hop) -> None:
        self.held.append((self.clock() + hop.delay_s, hop))

    def _pass_time(self) -> None:
        """A shape with deadlines, its carrier idle: the clock moves on by the shape's
        ``deadline_s``, and the SQS hops held until then are sent."""
        step = self.case.shape.deadline_s
        if step is None:
            return
        self.offset += step
        due = [hop for at, hop in self.held if at <= self.clock()]
        self.held = [(at, hop) for at, hop in self.held if at > self.clock()]
        for hop in due:
            self.sqs.dispatch(replace(hop, delay_s=0.0))

    def expected(self) -> RunResult:
        """The in-process runner's run; a cancelled shape: its state when the cancel came."""
        shape = self.case.shape
        named = {child["name"]: build_graph(child) for child in shape.children}
        runner = InProcessRunner(self.tools, subgraphs=named)
        graph = build_graph(shape.doc)
        if shape.cancel_after_task_of is None:
            return runner.run(graph, shape.input)
        before = runner.run(graph, shape.input, max_steps=shape.cancel_after_task_of)
        return RunResult("", "cancelled", before.state, shape.cancel_after_task_of + 1,
                         "cancelled by request", before.log)  # fmt: skip

    def run(self) -> None:
        shape = self.case.shape
        for child in shape.children:  # a subgraph node names a graph that exists
            self.service.create_graph(child)
        record, _ = self.service.create_graph(shape.doc)
        self.faults.twin_graph = self.service.create_graph(twin(shape.doc))[0].graph_id
        if shape.cancel_on_child_step:
            self.store.on_step_commit = self._cancel_on_child_step
        elif shape.cancel_after_task_of is not None:
            self.store.on_task_commit = self._cancel_at(shape.cancel_after_task_of)
        self.run_id = self.service.start_run(record.graph_id, shape.input)[0].run_id
        self.carrier.drive()
        # What only the sweeper can recover (a lost event). With a lease of 0 every pass finds
        # each stalled slot (a slot's progress is a time past: a task's start plus its
        # duration, a child's task's included), so the bound counts passes that recover
        # something, not time; one lost event needs one or two.
        for _ in range(10):
            if self.store.get_run(self.run_id).status != "running":
                break
            self._pass_time()
            self.service.sweep()
            self.carrier.drive()
        if self.case.fault.kind == "forge":  # a letter retried after the run: acknowledged
            while self._letters().poll_once().received:
                pass

    def _forge(self, hop: dict[str, Any], sqs_record: bool) -> None:
        """A forger with send rights: a dead letter for the hop being delivered, on the
        dead-letter queue, consumed by the real consumer before the hop goes on."""
        letter: Any = hop
        if not sqs_record:
            letter = {"version": "1.0", "requestContext": {"condition": "RetriesExhausted",
                      "approximateInvokeCount": 3, "functionArn": WORKER},
                      "requestPayload": {SELF_INVOKE_MARKER: "hop", "hop": hop},
                      "responsePayload": {"errorType": "Sandbox.Timedout"}}  # fmt: skip
        dlq = self.stack.urls["StepDLQ"]
        self.stack.sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps(letter))
        self._letters().poll_once()

    def _letters(self) -> SqsEventSource:
        """The dead-letter consumer on StepDLQ; a letter it cannot act on yet comes back at
        once (as after its visibility timeout)."""
        dlq = self.stack.urls["StepDLQ"]
        return SqsEventSource(self.stack.sqs, dlq, self._consume_letters, batch_size=10,
                              failed_visibility=0)  # fmt: skip

    def _consume_letters(self, event: Any, context: Any) -> Any:
        return handle_batch(event, context, self.service)

    def _subscribe_late(self) -> None:
        """What the subscribe route does: write the subscription, replay the log, then
        record how far the replay got."""
        self.store.save_connection(Connection(LATE, "https://ws.example/late", 2**40))
        self.store.subscribe(LATE, self.run_id)
        replayed = [s.seq for s in self.store.list_steps(self.run_id, limit=1000).items]
        self.store.record_replay(LATE, self.run_id, replayed[-1] if replayed else -1)
        self.notifier.late_subscriber(self.store, LATE, replayed)

    def _cancel_at(self, seq: int) -> Any:
        def cancel(task: Any) -> None:
            if task.seq == seq and self.store.get_run(task.run_id).status == "running":
                self.service.cancel_run(task.run_id)
                self.cancel_answered = self.faults.tick()

        return cancel

    def _cancel_on_child_step(self, step: Any) -> None:
        """Cancel the parent as the first step of one of its children commits."""
        if step.run_id.startswith(CHILD_PREFIX) and self.cancel_answered is None:
            self.service.cancel_run(self.run_id)
            self.cancel_answered = self.faults.tick()

    def _tell_twice(self, subgraphs: Any) -> None:
        """duplicate@child_completion: the nth child's end tells its parent twice."""
        tell = subgraphs.tell_parent

        def twice(child: Any) -> Any:
            told = tell(child)
            if self.faults.strikes("duplicate", "child_completion"):
                tell(child)
            return told

        subgraphs.tell_parent = twice

    # -- the invariants --------------------------------------------------------------------
    def check(self) -> None:
        expected = self.expected()
        run = self.store.get_run(self.run_id)
        got = (run.status, run.steps, _ids_out(run.error))
        assert got == (expected.status, expected.steps, _ids_out(expected.error)), got
        assert _ids_out(run.state) == _ids_out(expected.state), (
            "the final state differs from the in-process run")  # fmt: skip
        self._check_closes(run.steps, cancelled=run.status == "cancelled")
        self._check_tasks(expected)
        self._check_attempts()
        self._check_committed_attempts()
        shape = self.case.shape
        counted = shape.counted_fan_in_above is not None or shape.fold is not None
        assert bool(self.store.counted_commits) == counted, "counted fan-in not as planned"
        self._check_folds()
        if self.case.fault.kind == "subscribe":
            self._check_late_subscriber()
        if self.cancel_answered is not None:
            self._check_nothing_started_after_cancel(self.cancel_answered)
        seen = self.notifier.first_seen_steps(self.run_id)
        assert seen == sorted(seen), f"a subscriber saw supersteps out of order: {seen}"
        assert seen == list(range(len(seen))), f"a superstep was never published: {seen}"
        assert self.stack.messages("StepQueue") == [], "hops left on the queue"
        assert self.stack.messages("StepDLQ") == [], "a hop was dead-lettered"
        assert not self.carrier.late, "deliveries left to retry"
        assert self.faults.struck == 1, f"{self.case.id}: the fault struck {self.faults.struck}x"
        if self.case.shape.children:
            self._check_children(run.status, run.state)

    def _check_children(self, status: str, state: dict[str, Any]) -> None:
        """Every child run ended: completed with a completed parent, cancelled with a
        cancelled one (none left running), each under the parent's link, one per attempt of
        its task; children that fail: the parent went on by its error route."""
        children_end = self.case.shape.children_end
        if children_end is not None:
            went_on = status == "completed" and "error" in state
            assert went_on, f"the {children_end} child's task took no error route: {status}"
        # A listing carries what lists show (the index's projection), not the parent link.
        runs = [self.store.get_run(r.run_id) for r in self.store.list_runs(limit=100).items]
        children = [r for r in runs if r.parent is not None and r.parent["run_id"] == self.run_id]
        assert children, "no child run was created"
        ended = {r.run_id: r.status for r in children}
        want = "completed" if status == "completed" else "cancelled"
        want = children_end or want
        assert set(ended.values()) == {want}, f"children: {ended}"
        links = [r.parent for r in children]
        attempts = sorted((p["seq"], p["task"], p.get("attempt", 1)) for p in links)  # type: ignore[index]
        assert len(set(attempts)) == len(attempts), f"a task ran two children: {attempts}"
        tasks = sorted({(seq, task) for seq, task, _ in attempts})
        for seq, task in tasks:  # a child per attempt, attempts 1, 2, ...
            ran = [n for s, t, n in attempts if (s, t) == (seq, task)]
            assert ran == list(range(1, len(ran) + 1)), f"children of {task}: attempts {ran}"
        if status == "completed":
            want_tasks = sorted((e["seq"], e["task"]) for e in self.expected().log
                                if "child_run_id" in e)  # fmt: skip
            assert tasks == want_tasks, f"children of {tasks}, not {want_tasks}"

    def _check_nothing_started_after_cancel(self, answered: int) -> None:
        """No task whose slot check began after the cancel answered started. (A sibling's
        hop whose check began before, in a worker running at the same time, may have found
        the slot still open and started: two workers' reads and a commit are not one
        atomic step. Its commit then finds the slot cancelled.)"""
        starts = self.faulty_tools.checks_of_starts
        unchecked = [i for i, mark in enumerate(starts) if mark == 0]
        assert not unchecked, f"tools {unchecked} started with no slot check"
        late = [mark for mark in starts if mark > answered]
        assert not late, f"{len(late)} tasks started after the cancel answered"

    def _check_closes(self, steps: int, *, cancelled: bool) -> None:
        """Slots 0..steps-1 hold one record each, and each was written by exactly one
        successful commit."""
        slots = [s.seq for s in self.store.list_steps(self.run_id, limit=1000).items]
        assert slots == list(range(steps)), f"slots {slots}"
        closes = {seq: n for (rid, seq), n in self.store.closes.items() if rid == self.run_id}
        # (a cancel's slot too: it is the same one conditional write, commit_step's)
        assert closes == dict.fromkeys(range(steps), 1), f"closes per superstep: {closes}"

    def _check_folds(self) -> None:
        """A folded close wrote each page's fold record once, each page in turn (and no
        other shape folds)."""
        mine = {k[1:]: n for k, n in self.store.fold_commits.items() if k[0] == self.run_id}
        assert set(mine.values()) <= {1}, f"a fold page was committed twice: {mine}"
        if self.case.shape.fold is None:
            assert not mine, f"a superstep folded: {mine}"
            return
        assert mine, "the wide superstep did not fold"
        for seq in {seq for seq, _ in mine}:
            pages = sorted(p for s, p in mine if s == seq)
            assert pages == list(range(1, len(pages) + 1)), f"fold pages {seq}: {pages}"

    def _check_late_subscriber(self) -> None:
        """The client that subscribed in a commit's window got every superstep (a cancel's
        slot has no step event: the run's status says it)."""
        steps = self.store.list_steps(self.run_id, limit=1000).items
        cancelled = {s.seq for s in steps if s.status == "cancelled"}
        want = [s.seq for s in steps if s.seq not in cancelled]
        got = sorted(set(self.notifier.late_seen) - cancelled)
        assert got == want, f"the late subscriber got supersteps {got}, not {want}"

    def _check_attempts(self) -> None:
        """Each failed attempt of a retried task was recorded once, attempts 1, 2, ... with
        no gap (the flaky tool fails twice: at most two per task)."""
        mine = {k[1:]: n for k, n in self.store.attempt_commits.items() if k[0] == self.run_id}
        assert set(mine.values()) <= {1}, f"an attempt was recorded twice: {mine}"
        per_task: dict[tuple[int, str], list[int]] = {}
        for seq, task, attempt in sorted(mine):
            per_task.setdefault((seq, task), []).append(attempt)
        for task, attempts in per_task.items():
            assert attempts == list(range(1, len(attempts) + 1)), f"attempts {task}: {attempts}"
        if self.case.shape.retries:
            assert per_task, "the flaky task recorded no failed attempt"

    def _check_committed_attempts(self) -> None:
        """Each task committed at an attempt its failed attempts and deliveries account for:
        one more than its superstep recorded for it, or one more again when the fault made
        its hop come twice (a redelivery runs as the next attempt); never what a hop says."""
        for step in self.store.list_steps(self.run_id, limit=1000).items:
            failed = Counter(a.key for a in self.store.list_attempts(self.run_id, step.seq))
            tasks = self.store.list_tasks(self.run_id, step.seq)
            done = [(t.key, t.attempt) for t in tasks]
            if not tasks and not step.tasks_total and step.status != "cancelled":
                done = [(step.node, step.attempt)]
            for key, attempt in done:
                want = (failed[key] + 1, failed[key] + 2)
                assert want[0] <= attempt <= want[1], f"step {step.seq} {key}: attempt {attempt}"

    def _check_tasks(self, expected: RunResult) -> None:
        """Each task of a superstep of several committed once, and they are the runner's (a
        cancelled superstep's tasks may commit or not, at most once)."""
        per_superstep = Counter(e["seq"] for e in expected.log)
        want = sorted((e["seq"], e["task"]) for e in expected.log
                      if per_superstep[e["seq"]] > 1)  # fmt: skip
        mine = {k: n for k, n in self.store.task_commits.items() if k[0] == self.run_id}
        assert set(mine.values()) <= {1}, f"a task committed twice: {mine}"
        got = sorted((seq, key) for _, seq, key in mine)
        if self.case.shape.cancel_after_task_of is None:
            assert got == want, "tasks committed differ from the in-process run's"
        else:
            assert all(seq <= self.case.shape.cancel_after_task_of for seq, _ in got), got
