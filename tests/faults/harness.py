"""Fault injection around the REAL worker handler, on moto, and the invariant every run keeps.

Runs are started through the run service and driven by ``infra.event_source`` feeding SQS
events built from moto's step queue to ``functions.worker.handler.handler``; the service it
uses is installed with ``functions.runtime.install`` over wrapped adapters (DynamoDB store,
SQS dispatch, toolkit) so that faults strike where the step protocol has its windows:

==================  =========================================================================
kind                how it is injected
==================  =========================================================================
crash_before_tool   the toolkit's ``get`` raises :class:`SimulatedCrash` (the tool never runs)
crash_before_commit the store's ``commit_step`` raises before writing (the tool ran)
crash_after_commit  ``commit_step`` writes, then raises (the successor is never dispatched)
crash_before_ack    the handler returns, then the invocation dies (nothing is acknowledged)
duplicate_delivery  every record is delivered again (same message id) in a later batch
out_of_order        batches are shuffled, and some records held back to a later batch
concurrent_workers  two threads run the handler on the same event at the same time (30% of the
                    batches)
throttled_commit    a botocore ``before-call`` hook answers the commit's PutItem or
                    TransactWriteItems with ProvisionedThroughputExceededException
==================  =========================================================================

A crash is a :class:`BaseException`, as the death of a Lambda invocation is: nothing in the
handler catches it, the whole batch goes back to the queue. Faults are random (seeded) and
stay within the retry budget: none is injected into a batch holding a message already
received three times, so no message is dead-lettered by injected faults alone (that path,
poison hop -> DLQ -> run failed, has its own functional test). A failed message becomes
visible again at once instead of after its visibility timeout, and moto runs with the patches
of :mod:`tests.faults.moto_speedups`, so the suite stays fast.

:meth:`FaultHarness.check` asserts, for every run: it ended; each slot 0..n-1 is present and
was committed exactly once (the store wrapper counts successful commits per slot); and its
status, final state, and every step's node and updates equal ``InProcessRunner``'s.
"""

from __future__ import annotations

import copy
import dataclasses
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSResponse

from engine.graph import Graph
from engine.memory import MemoryRunStore
from engine.ports import Hop, RunRecord, StepQueue
from engine.runner import InProcessRunner, RunResult
from engine.service import RunService
from engine.tools import Toolkit
from engine.validation import build_graph
from functions import runtime
from functions.aws.dispatch import SqsStepQueue
from functions.aws.dynamodb_store import DynamoRunStore
from functions.settings import get_settings
from functions.worker.handler import handler as worker_handler
from infra.event_source import SqsEventSource
from tests.functional.aws_stack import TABLE, AwsStack, lambda_context

KINDS = (
    "crash_before_tool",
    "crash_before_commit",
    "crash_after_commit",
    "crash_before_ack",
    "duplicate_delivery",
    "out_of_order",
    "concurrent_workers",
    "throttled_commit",
)
RECEIVE_BUDGET = 3
"""Faults strike only batches whose messages were all received at most this many times."""
COMMIT_OPERATIONS = ("PutItem", "TransactWriteItems")


class SimulatedCrash(BaseException):
    """The Lambda invocation dies here (BaseException: no handler code catches it)."""


@dataclass
class Injector:
    """Decides, reproducibly, whether a fault strikes now."""

    kind: str
    rate: float
    seed: int
    injected: Counter[str] = field(default_factory=Counter)
    _rng: random.Random = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _local: threading.local = field(default_factory=threading.local)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def chance(self, rate: float | None = None) -> bool:
        with self._lock:
            return self._rng.random() < (self.rate if rate is None else rate)

    def shuffle(self, items: list[Any]) -> None:
        with self._lock:
            self._rng.shuffle(items)

    def arm(self, armed: bool) -> None:
        """Faults strike only in this thread's handler call, and only when ``armed``."""
        self._local.armed = armed

    def strikes(self, kind: str) -> bool:
        if kind != self.kind or not getattr(self._local, "armed", False) or not self.chance():
            return False
        with self._lock:
            self.injected[kind] += 1
        return True

    def crash_if(self, kind: str) -> None:
        if self.strikes(kind):
            raise SimulatedCrash(kind)


class FaultyTools:
    """The toolkit, whose ``get`` (just before the tool runs) may crash.

    With ``one_at_a_time``, tools run one at a time: the code-review tools call ``ast.parse``,
    and CPython 3.11's AST constructor is not safe in two threads at once (it fails with
    "SystemError: AST constructor recursion depth mismatch", python/cpython#106905). Lambda
    never runs two invocations in one process; the fault is two workers racing on the store.
    """

    def __init__(self, inner: Toolkit, faults: Injector, *, one_at_a_time: bool = False) -> None:
        self.inner = inner
        self.faults = faults
        self._lock = threading.Lock() if one_at_a_time else None

    def get(self, name: str) -> Any:
        self.faults.crash_if("crash_before_tool")
        tool = self.inner.get(name)
        if self._lock is None:
            return tool
        lock, fn = self._lock, tool.fn

        def serialised(state: Any, ctx: Any) -> Any:
            with lock:
                return fn(state, ctx)

        return dataclasses.replace(tool, fn=serialised)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class FaultyStore:
    """The DynamoDB store, counting each successful commit per slot, crashing around it.

    DynamoDB applies conditional writes to one item one at a time; moto's in-process backend
    does not when two threads write at once, so commits are serialised here (the condition
    itself is still DynamoDB's, evaluated by moto)."""

    def __init__(self, inner: DynamoRunStore, faults: Injector) -> None:
        self.inner = inner
        self.faults = faults
        self.commits: Counter[tuple[str, int]] = Counter()
        self.task_commits: Counter[tuple[str, int, str]] = Counter()
        self.ended: set[str] = set()
        """Runs whose last step is committed (so the harness knows when to stop without
        polling the store: a moto Query sorts the whole table)."""
        self._lock = threading.Lock()

    def commit_step(self, step: Any, end: Any = None) -> None:
        self.faults.crash_if("crash_before_commit")
        with self._lock:
            self.inner.commit_step(step, end)
            self.commits[(step.run_id, step.seq)] += 1
            if end is not None:
                self.ended.add(step.run_id)
        self.faults.crash_if("crash_after_commit")

    def commit_task(self, task: Any) -> None:
        """A task of a superstep of several: the same crash windows as a step's commit."""
        self.faults.crash_if("crash_before_commit")
        with self._lock:
            self.inner.commit_task(task)
            self.task_commits[(task.run_id, task.seq, task.key)] += 1
        self.faults.crash_if("crash_after_commit")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class CountingQueue:
    """The SQS dispatch, counting hops sent (duplicates and recoveries included)."""

    def __init__(self, inner: StepQueue) -> None:
        self.inner = inner
        self.sent = 0

    def dispatch(self, hop: Hop) -> None:
        self.inner.dispatch(hop)
        self.sent += 1

    def dispatch_batch(self, hops: list[Hop]) -> None:
        self.inner.dispatch_batch(hops)
        self.sent += len(hops)


@dataclass(frozen=True)
class Workload:
    """Runs of one graph on one input, and what the in-process runner makes of it."""

    graph_id: str
    graph: Graph
    input: dict[str, Any]
    expected: RunResult


class FaultHarness:
    """A worker fleet on moto with one kind of fault injected."""

    def __init__(self, stack: AwsStack, kind: str, *, rate: float, seed: int) -> None:
        self.stack = stack
        self.faults = Injector(kind, rate, seed)
        settings = get_settings()
        tools = runtime.build_tools(settings)
        self.tools = tools
        self.store = FaultyStore(DynamoRunStore(TABLE, stack.dynamodb), self.faults)
        self.queue = CountingQueue(SqsStepQueue(stack.urls["StepQueue"], stack.sqs))
        self.service = RunService(
            self.store,  # type: ignore[arg-type]
            self.queue,
            FaultyTools(tools, self.faults, one_at_a_time=kind == "concurrent_workers"),  # type: ignore[arg-type]
            config=runtime.engine_config(settings),
        )
        runtime.install(self.service)
        self.source = SqsEventSource(
            stack.sqs, stack.urls["StepQueue"], self.handle, batch_size=10, failed_visibility=0
        )
        self.ghosts: list[dict[str, Any]] = []
        self.crashes = 0
        self.deliveries = 0
        self.runs: dict[str, Workload] = {}
        if kind == "throttled_commit":
            stack.dynamodb.meta.events.register("before-call.dynamodb", self._throttle)

    # -- workloads -------------------------------------------------------------------------
    def workload(self, doc: dict[str, Any], state: dict[str, Any]) -> Workload:
        record, graph = self.service.create_graph(doc)
        store = MemoryRunStore() if graph.is_chain else None  # parallel runs keep their log
        expected = InProcessRunner(self.tools, store=store).run(build_graph(doc), state)
        return Workload(record.graph_id, graph, state, expected)

    def start(self, workload: Workload, runs: int) -> None:
        for _ in range(runs):
            run, _created = self.service.start_run(workload.graph_id, workload.input)
            self.runs[run.run_id] = workload

    # -- driving ---------------------------------------------------------------------------
    def drive(self, max_polls: int = 20_000) -> None:
        """Poll until every run has ended and no message is left; crashes are survived."""
        idle = 0
        for _ in range(max_polls):
            try:
                received = self.source.poll_once().received
            except SimulatedCrash:
                self.crashes += 1
                continue
            if not received and self.ghosts:
                self._flush_ghosts()
                received = 1
            if received:
                idle = 0
                continue
            idle += 1
            if idle >= 2 and self._all_ended():
                return
        raise AssertionError(f"runs still moving after {max_polls} polls: {self._unfinished()}")

    def handle(self, event: dict[str, Any], context: Any) -> Any:
        """The handler as the event source calls it, with this harness's fault around it."""
        self.deliveries += len(event["Records"])
        within_budget = all(
            int(r["attributes"]["ApproximateReceiveCount"]) <= RECEIVE_BUDGET
            for r in event["Records"]
        )
        kind = self.faults.kind
        if kind == "duplicate_delivery":
            return self._with_ghosts(event, context)
        if kind == "out_of_order" and within_budget:
            return self._out_of_order(event, context)
        if kind == "concurrent_workers" and self.faults.chance():
            return self._twice_at_once(event)
        self.faults.arm(within_budget)
        try:
            response = worker_handler(event, context)
            self.faults.crash_if("crash_before_ack")
            return response
        finally:
            self.faults.arm(False)

    def _with_ghosts(self, event: dict[str, Any], context: Any) -> Any:
        # Every record comes back once more, in a later batch, as a new receive of the same
        # message (same id, one more receive); a ghost whose message is in this very batch
        # (it is being redelivered anyway) waits for the next one.
        ids = {r["messageId"] for r in event["Records"]}
        ready = [g for g in self.ghosts if g["messageId"] not in ids]
        self.ghosts = [g for g in self.ghosts if g["messageId"] in ids]
        for record in event["Records"]:
            ghost = copy.deepcopy(record)
            count = int(ghost["attributes"]["ApproximateReceiveCount"])
            ghost["attributes"]["ApproximateReceiveCount"] = str(count + 1)
            self.ghosts.append(ghost)
        records = event["Records"] + ready
        self.faults.shuffle(records)
        self.faults.injected["duplicate_delivery"] += len(ready)
        response = worker_handler({"Records": records}, context)
        failures = [f for f in response["batchItemFailures"] if f["itemIdentifier"] in ids]
        return {"batchItemFailures": failures}

    def _flush_ghosts(self) -> None:
        """The queue is empty: the duplicates still owed arrive on their own."""
        ghosts, self.ghosts = self.ghosts, []
        self.faults.injected["duplicate_delivery"] += len(ghosts)
        worker_handler({"Records": ghosts}, lambda_context())

    def _out_of_order(self, event: dict[str, Any], context: Any) -> Any:
        records = list(event["Records"])
        self.faults.shuffle(records)
        held = [r for r in records if self.faults.chance(0.2)]
        self.faults.injected["out_of_order"] += len(held)
        handed = [r for r in records if r not in held]
        response = worker_handler({"Records": handed}, context) if handed else {}
        failures = list(response.get("batchItemFailures", []))
        return {"batchItemFailures": failures + [{"itemIdentifier": r["messageId"]} for r in held]}

    def _twice_at_once(self, event: dict[str, Any]) -> Any:
        # Two invocations given the same batch at once (a redelivery racing a slow worker).
        start = threading.Barrier(2)
        responses: list[Any] = [None, None]

        def invoke(i: int) -> None:
            start.wait()
            responses[i] = worker_handler(copy.deepcopy(event), lambda_context())

        threads = [threading.Thread(target=invoke, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.faults.injected["concurrent_workers"] += 1
        failed = {f["itemIdentifier"] for r in responses for f in r["batchItemFailures"]}
        return {"batchItemFailures": [{"itemIdentifier": i} for i in sorted(failed)]}

    def _throttle(self, model: Any, **_: Any) -> Any:
        if model.name not in COMMIT_OPERATIONS or not self.faults.strikes("throttled_commit"):
            return None
        # Returning a response from before-call skips the request (and botocore's retries):
        # this is DynamoDB still throttling after the SDK's own attempts.
        error = {
            "Error": {
                "Code": "ProvisionedThroughputExceededException",
                "Message": "The level of configured provisioned throughput was exceeded",
            },
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }
        return AWSResponse("https://dynamodb.us-east-1.amazonaws.com/", 400, {}, None), error

    # -- the invariant ---------------------------------------------------------------------
    def _all_ended(self) -> bool:
        return not self._unfinished()

    def _unfinished(self) -> list[str]:
        return [r for r in self.runs if r not in self.store.ended]

    def check(self) -> None:
        """Every run ended, each step committed exactly once in order, as the reference."""
        for run_id, workload in self.runs.items():
            run = self.store.get_run(run_id)
            self._check_run(run, workload)
        assert self.stack.messages("StepDLQ") == [], "a hop was dead-lettered"
        assert self.stack.messages("StepQueue") == [], "hops left on the queue"

    def _check_run(self, run: RunRecord, workload: Workload) -> None:
        expected = workload.expected
        assert run.is_final, f"run {run.run_id} did not end: {run.status}"
        steps = self.store.list_steps(run.run_id, limit=1000).items
        seqs = [s.seq for s in steps]
        assert seqs == list(range(run.steps)), f"run {run.run_id}: slots {seqs}"
        commits = {seq: n for (rid, seq), n in self.store.commits.items() if rid == run.run_id}
        assert commits == dict.fromkeys(range(run.steps), 1), f"run {run.run_id}: {commits}"
        assert (run.status, run.steps, run.error) == (
            expected.status,
            expected.steps,
            expected.error,
        )
        assert run.state == expected.state, f"run {run.run_id}: final state differs"
        if not workload.graph.is_chain:
            self._check_tasks(run, workload)
            return
        got = [(s.node, s.updates, s.status) for s in steps]
        want = [(e["node"], e["updates"], e["status"]) for e in expected.log]
        assert got == want, f"run {run.run_id}: step log differs from the in-process runner's"

    def _check_tasks(self, run: RunRecord, workload: Workload) -> None:
        """Each task of a superstep of several committed exactly once: the ones the in-process
        runner ran, superstep by superstep (a superstep of one task is its step record)."""
        per_superstep = Counter(e["seq"] for e in workload.expected.log)
        want = sorted((e["seq"], e["task"]) for e in workload.expected.log
                      if per_superstep[e["seq"]] > 1)  # fmt: skip
        mine = {k: n for k, n in self.store.task_commits.items() if k[0] == run.run_id}
        assert set(mine.values()) <= {1}, f"run {run.run_id}: a task committed twice: {mine}"
        assert sorted((seq, key) for _, seq, key in mine) == want, f"run {run.run_id}: tasks"

    def summary(self) -> str:
        return (
            f"{self.faults.kind}: {len(self.runs)} runs, {self.deliveries} deliveries, "
            f"{self.queue.sent} hops sent, faults {dict(self.faults.injected)}, "
            f"crashed invocations {self.crashes}"
        )
