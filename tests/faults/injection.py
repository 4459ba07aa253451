"""Where a planned fault strikes: wrappers around the worker's real adapters (the DynamoDB
store, the dispatch, the toolkit) and a botocore hook, each asking the :class:`Injector`
whether this occurrence of its window is the planned one.

A crash is a :class:`BaseException`, as the death of a Lambda invocation is: no handler code
catches it, and the carrier treats the whole delivery as failed.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import Counter
from contextvars import ContextVar
from typing import Any

from botocore.awsrequest import AWSResponse

from engine.ports import Audience, Hop, RunStore, StepQueue
from engine.subgraphs import CHILD_PREFIX
from functions.aws.dispatch import LambdaStepQueue, self_invoke_payload
from functions.aws.dynamodb_items import FANIN_PREFIX
from functions.aws.dynamodb_store import DynamoRunStore
from tests.faults.plan import Fault

COMMIT_OPERATIONS = ("PutItem", "TransactWriteItems")


class SimulatedCrash(BaseException):
    """The Lambda invocation dies here (BaseException: no handler code catches it)."""


class SimulatedLoss(SimulatedCrash):
    """The invocation dies here and its event is gone for good: a request that died, or a
    message that was acknowledged (or expired) without its work done. No carrier redelivers
    it; only the sweeper can recover what it left undone."""


class Injector:
    """Counts each occurrence of the planned fault's window; it strikes on the ``nth``.

    Windows inside the worker count only while a worker invocation runs (``arm``), in its
    thread and in the threads it hands its context to (the SQS worker applies a batch's
    hops in a pool, each in a copy of the invocation's context): the run's start, the
    test's own reads and checks never strike."""

    def __init__(self, fault: Fault, nth: int) -> None:
        self.fault = fault
        self.nth = nth
        self.seen: Counter[str] = Counter()
        self.struck = 0
        self._lock = threading.Lock()
        self._armed: ContextVar[bool] = ContextVar(f"faults-armed-{id(self)}", default=False)
        self.on_subscribe: Any = None
        """What a client subscribing does (the subscribe fault calls it)."""
        self.on_forge: Any = None
        """What a forger does with the hop being delivered (forge@dead_letter calls it)."""
        self.twin_graph = ""
        """A graph with the run's node names and other tools (forge@hop names it)."""
        self._ticks = itertools.count(1)
        self._slot_checked: ContextVar[int] = ContextVar(f"slot-checked-{id(self)}", default=0)

    def tick(self) -> int:
        """The next mark of an order all threads share (each mark taken once)."""
        with self._lock:
            return next(self._ticks)

    def note_slot_check(self) -> None:
        """A hop's slot check begins, in this hop's context (a thread, or a copy of the
        invocation's context in the SQS worker's pool): it is marked."""
        self._slot_checked.set(self.tick())

    def in_worker(self) -> bool:
        """Whether a worker invocation runs in this context (:meth:`arm`)."""
        return self._armed.get()

    def slot_checked(self) -> int:
        """The mark of this context's last slot check (0: none)."""
        return self._slot_checked.get()

    def arm(self, armed: bool) -> None:
        self._armed.set(armed)

    def strikes(self, kind: str, window: str, *, in_worker: bool = True) -> bool:
        if (kind, window) != (self.fault.kind, self.fault.window):
            return False
        if in_worker and not self._armed.get():
            return False
        with self._lock:
            self.seen[window] += 1
            hit = self.seen[window] == self.nth
            self.struck += hit
        return hit

    def crash_at(self, window: str) -> None:
        if self.strikes("crash", window):
            raise SimulatedCrash(window)
        if self.strikes("lose", window):
            raise SimulatedLoss(window)

    def forged_hops(self, hop: dict[str, Any]) -> list[dict[str, Any]]:
        """Forgeries of ``hop``: one naming the twin graph, with a state and a step limit of
        its own; one saying it is a later attempt of its task, which no retry scheduled."""
        return [
            {**hop, "graph_id": self.twin_graph, "state": {"hijacked": True},
             "max_steps": 10_000},
            {**hop, "attempt": int(hop.get("attempt", 1)) + 2},
        ]  # fmt: skip

    def forge(self, hop: dict[str, Any], *, sqs_record: bool) -> None:
        if self.on_forge is not None:
            self.on_forge(hop, sqs_record)

    def subscribe_at(self, window: str) -> None:
        if self.strikes("subscribe", window) and self.on_subscribe is not None:
            self.on_subscribe()

    def throttle_hook(self, model: Any, params: Any = None, **_: Any) -> Any:
        """botocore ``before-call``: DynamoDB still throttling after the SDK's retries."""
        if model.name in COMMIT_OPERATIONS:
            window = "commit"
        elif model.name == "Query" or _reads_a_task_count(model.name, params):
            window = "fan_in_query"
        else:
            return None
        if not self.strikes("throttle", window):
            return None
        # A response from before-call skips the request and botocore's own retries.
        error = {
            "Error": {
                "Code": "ProvisionedThroughputExceededException",
                "Message": "The level of configured provisioned throughput was exceeded",
            },
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }
        return AWSResponse("https://dynamodb.us-east-1.amazonaws.com/", 400, {}, None), error


def _reads_a_task_count(operation: str, params: Any) -> bool:
    """A GetItem of a superstep's task count: the fan-in read of a counted superstep."""
    if operation != "GetItem" or not isinstance(params, dict):
        return False
    body = params.get("body") or b"{}"
    key = json.loads(body).get("Key", {})
    return str(key.get("SK", {}).get("S", "")).startswith(FANIN_PREFIX)


class FaultyTools:
    """The toolkit; its ``get`` (just before the tool runs) is the ``before_tool`` window."""

    def __init__(self, inner: Any, faults: Injector) -> None:
        self.inner = inner
        self.faults = faults
        self.checks_of_starts: list[int] = []
        """For each tool a worker started, the mark of the slot check its hop passed (the
        Injector's order; 0: a start with no slot check in its context)."""

    def get(self, name: str) -> Any:
        self.faults.crash_at("before_tool")
        if self.faults.in_worker():  # not a graph's validation, at its creation
            self.checks_of_starts.append(self.faults.slot_checked())
        return self.inner.get(name)

    def commit_pause(self, pause: Any, *, hold: bool) -> None:
        """A task that waits for input (engine/pauses.py): window P1 is after it."""
        with self._lock:
            self.inner.commit_pause(pause, hold=hold)
            self.pause_commits[(pause.run_id, pause.seq, pause.task, pause.kind)] += 1
        self.faults.crash_at("after_pause_commit")

    def answer_pause(self, pause: Any) -> None:
        with self._lock:
            self.inner.answer_pause(pause)
            self.answers[(pause.run_id, pause.seq, pause.task, pause.kind)] += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class FaultyStore:
    """The DynamoDB store: the commit windows, and a count of successful commits per slot.

    DynamoDB applies conditional writes to one item one at a time; moto's in-process backend
    does not when two threads write at once, so writes are serialised here (the condition
    itself is still DynamoDB's, evaluated by moto)."""

    def __init__(self, inner: DynamoRunStore, faults: Injector) -> None:
        self.inner = inner
        self.faults = faults
        self.closes: Counter[tuple[str, int]] = Counter()
        self.task_commits: Counter[tuple[str, int, str]] = Counter()
        self.counted_commits = 0
        self.attempt_commits: Counter[tuple[str, int, str, int]] = Counter()
        self.pause_commits: Counter[tuple[str, int, str, str]] = Counter()
        self.answers: Counter[tuple[str, int, str, str]] = Counter()
        self.fold_commits: Counter[tuple[str, int, int]] = Counter()
        self.on_task_commit: Any = None
        """Called with each task committed (the cancel shape cancels from here)."""
        self.on_step_commit: Any = None
        """Called with each step committed (the cancelled subgraph shape cancels from here)."""
        self._lock = threading.Lock()

    def read_slot(self, run_id: str, seq: int) -> Any:
        """The slot check a hop passes before its task starts: marked as it begins (a read
        that began before a cancel committed may still have found the slot open)."""
        self.faults.note_slot_check()
        return self.inner.read_slot(run_id, seq)

    def commit_step(self, step: Any, end: Any = None) -> None:
        self.faults.crash_at("before_commit")
        self.faults.subscribe_at("before_commit")
        with self._lock:
            self.inner.commit_step(step, end)
            self.closes[(step.run_id, step.seq)] += 1
        if self.on_step_commit is not None:
            self.on_step_commit(step)
        self.faults.crash_at("after_close_commit")
        if end is not None and step.run_id.startswith(CHILD_PREFIX):
            self.faults.crash_at("after_child_close")  # a child ended; its parent not told

    def commit_task(self, task: Any, *, counted: bool = False) -> None:
        self.faults.crash_at("before_commit")
        self.faults.subscribe_at("before_commit")
        with self._lock:
            self.inner.commit_task(task, counted=counted)
            self.task_commits[(task.run_id, task.seq, task.key)] += 1
            self.counted_commits += counted
        if self.on_task_commit is not None:
            self.on_task_commit(task)
        self.faults.crash_at("after_task_commit")

    def commit_attempt(self, attempt: Any) -> None:
        """A retried task's failed attempt (engine/retries.py): its window is after it."""
        with self._lock:
            self.inner.commit_attempt(attempt)
            self.attempt_commits[(attempt.run_id, attempt.seq, attempt.key, attempt.attempt)] += 1
        self.faults.crash_at("after_attempt_commit")

    def commit_pause(self, pause: Any, *, hold: bool) -> None:
        """A task that waits for input (engine/pauses.py): window P1 is after it."""
        with self._lock:
            self.inner.commit_pause(pause, hold=hold)
            self.pause_commits[(pause.run_id, pause.seq, pause.task, pause.kind)] += 1
        self.faults.crash_at("after_pause_commit")

    def answer_pause(self, pause: Any) -> None:
        with self._lock:
            self.inner.answer_pause(pause)
            self.answers[(pause.run_id, pause.seq, pause.task, pause.kind)] += 1

    def commit_fold(self, fold: Any, after: str | None) -> None:
        """A page of a wide superstep's close (engine/fold.py): its window is after it."""
        with self._lock:
            self.inner.commit_fold(fold, after)
            self.fold_commits[(fold.run_id, fold.seq, fold.pages)] += 1
        self.faults.crash_at("after_fold_commit")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _around_dispatch(faults: Injector, send: Any, hops: Any) -> None:
    faults.crash_at("after_publish")  # the protocol publishes, then dispatches
    send(hops)
    faults.crash_at("after_dispatch")


class FaultySqsDispatch:
    """The SQS dispatch with the windows either side of sending. ``hold``: where a hop held
    for a time goes instead (a case whose clock the fleet moves: it sends each once due, as
    SQS would deliver it after its DelaySeconds)."""

    def __init__(self, inner: StepQueue, faults: Injector, hold: Any = None) -> None:
        self.inner = inner
        self.faults = faults
        self.hold = hold

    def dispatch(self, hop: Hop) -> None:
        if hop.delay_s > 0 and self.hold is not None:
            _around_dispatch(self.faults, self.hold, hop)
            return
        _around_dispatch(self.faults, self.inner.dispatch, hop)

    def dispatch_batch(self, hops: list[Hop]) -> None:
        _around_dispatch(self.faults, self.inner.dispatch_batch, hops)


class InTestInvoke(LambdaStepQueue):
    """The self-invoke dispatch, whose asynchronous Invoke is an in-test queue of payloads.

    Everything the worker sends (first deliveries and its own redeliveries) goes through the
    real payload builders of :class:`LambdaStepQueue`; only the Invoke call is replaced: the
    carrier (tests/faults/carriers.py) calls the real handler with each payload in turn."""

    def __init__(self, faults: Injector, function_name: str) -> None:
        super().__init__(function_name, client=None)
        self.faults = faults
        self.payloads: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def dispatch(self, hop: Hop) -> None:
        _around_dispatch(self.faults, super().dispatch, hop)

    def dispatch_batch(self, hops: list[Hop]) -> None:
        # One after the other, not several at once as over boto3: the queue of payloads keeps
        # the order sent, so each case of the plan replays the same way.
        _around_dispatch(self.faults, self._invoke_each, hops)

    def _invoke_each(self, hops: list[Hop]) -> None:
        for hop in hops:
            self.invoke(self_invoke_payload(hop))

    def invoke(self, payload: dict[str, Any]) -> None:
        with self._lock:
            self.payloads.append(payload)


class RecordingNotifier:
    """A subscriber from the start: every event published, in order. And a late one, once
    :meth:`late_subscriber` names it: the supersteps it got, by replay and live, as an
    API Gateway notifier would post them to it (engine.ports.Audience)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.late_seen: list[int] = []
        self._late: tuple[RunStore, str] | None = None
        self._lock = threading.Lock()

    def late_subscriber(self, store: RunStore, connection_id: str, replayed: list[int]) -> None:
        with self._lock:
            self._late = (store, connection_id)
            self.late_seen.extend(replayed)

    def publish(
        self, run_id: str, events: list[dict[str, Any]], audience: Audience | None = None
    ) -> None:
        audience = audience or Audience()
        with self._lock:
            self.events.extend(events)
            if self._late is None:
                return
            store, late_id = self._late
            if audience.subscribers is None:
                subscribers: Any = store.subscribers(run_id)
            else:
                subscribers = audience.subscribers
            for late in (c for c in subscribers if c.connection_id == late_id):
                if audience.previous is not None and audience.missed_previous(late):
                    self.late_seen.append(audience.previous.seq)
                self.late_seen.extend(e["seq"] for e in events if e["type"] == "step")

    def first_seen_steps(self, run_id: str) -> list[int]:
        """The supersteps in the order a subscriber first saw each (it dedupes by seq)."""
        seqs = [e["seq"] for e in self.events if e["type"] == "step" and e["run_id"] == run_id]
        return list(dict.fromkeys(seqs))
