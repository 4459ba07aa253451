"""The two ways a hop reaches the REAL worker handler, driven one delivery at a time, with the
plan's delivery faults (duplicate, race, reorder) applied where the carrier delivers.

Both carriers schedule the same way, deterministically: first in, first out, and a delivery
that failed (a crash, a throttle, a held-back hop) comes back only once nothing else is
waiting, as SQS's redelivery after the visibility timeout and Lambda's retry of a failed
asynchronous invocation (a minute later) come after the hops sent meanwhile.
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections import deque
from typing import Any

from functions.worker.handler import handler as worker_handler
from infra.stack.event_source import SqsEventSource
from infra.stack.lambda_context import LambdaContext
from tests.faults.injection import Injector, InTestInvoke, SimulatedCrash, SimulatedLoss

WORKER = "hopgraph-worker"
PER_HOP = frozenset({
    ("duplicate", "delivery"), ("race", "same_hop"), ("reorder", "delivery"),
    ("forge", "hop"), ("forge", "dead_letter"), ("duplicate", "fold_hop"), ("race", "fold_hop"),
})  # fmt: skip
"""The delivery faults that strike one hop (the carrier counts hops delivered for them)."""
LATE_S = 3_600
"""A failed message's visibility: long enough that it stays away until released (SQS caps
a message's total at 12 hours from its receive)."""


def invoke_worker(faults: Injector, event: dict[str, Any], context: Any) -> Any:
    """One worker invocation, with the worker-side windows armed in this thread."""
    faults.arm(True)
    try:
        response = worker_handler(event, context)
        faults.crash_at("before_ack")
        return response
    finally:
        faults.arm(False)


def at_once(calls: list[Any]) -> list[Any]:
    """Run the calls in threads started together; their results (or exceptions), in order."""
    start = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = calls[i]()
        except BaseException as exc:  # a crash in one worker does not stop the other
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def context(request_id: str | None = None) -> LambdaContext:
    # Less than a second left: the worker's backoff before a self-redelivery is capped by
    # the time left minus one second, so it does not sleep (the carrier orders, not a clock).
    return LambdaContext(function_name=WORKER, aws_request_id=request_id or str(uuid.uuid4()),
                         timeout_s=0.9)  # fmt: skip


def _strikes_hop(faults: Injector, hop: Any) -> bool:
    """Whether the planned per-hop fault strikes this hop (``hop``: the message's body);
    the fold_hop window counts fold hops only."""
    fault = faults.fault
    if (fault.kind, fault.window) not in PER_HOP:
        return False
    if fault.window == "fold_hop" and not (isinstance(hop, dict) and hop.get("fold") is True):
        return False
    return faults.strikes(fault.kind, fault.window, in_worker=False)


class SqsCarrier:
    """The step queue on moto, polled by ``infra.stack.event_source`` in batches of ten."""

    def __init__(self, sqs: Any, queue_url: str, faults: Injector) -> None:
        self.sqs = sqs
        self.faults = faults
        self.source = SqsEventSource(sqs, queue_url, self.handle, batch_size=10,
                                     failed_visibility=LATE_S)  # fmt: skip
        self.queue_url = queue_url
        self.late: dict[str, str] = {}
        """Failed messages (id -> receipt handle), invisible until the queue is idle."""

    def drive(self, max_polls: int = 2_000) -> None:
        for _ in range(max_polls):
            try:
                if self.source.poll_once().received:
                    continue
            except SimulatedCrash:
                continue
            if not self.late:
                return
            self._release()
        raise AssertionError(f"the step queue is still busy after {max_polls} polls")

    def _release(self) -> None:
        for handle in self.late.values():
            self.sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=handle, VisibilityTimeout=0
            )
        self.late.clear()

    def handle(self, event: dict[str, Any], ctx: Any) -> Any:
        """The handler as the event source calls it: the delivery faults, then the worker."""
        records = event["Records"]
        try:
            response = self._deliver(records, ctx)
        except SimulatedLoss:  # acknowledged without its work done: gone for good
            return {"batchItemFailures": []}
        except BaseException:
            self.late.update((r["messageId"], r["receiptHandle"]) for r in records)
            raise
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        self.late.update((r["messageId"], r["receiptHandle"]) for r in records
                         if r["messageId"] in failed)  # fmt: skip
        return response

    def _deliver(self, records: list[dict[str, Any]], ctx: Any) -> Any:
        kind = self.faults.fault.kind
        if len(records) > 1 and self.faults.strikes("race", "sibling_hops", in_worker=False):
            return self._merged([{"Records": [r]} for r in records])
        hit = [r for r in records if self._strikes_hop(json.loads(r["body"]))]
        if hit and kind == "forge" and self.faults.fault.window == "hop":
            # Forged messages for the same slot, received before the real one
            for forged in self.faults.forged_hops(json.loads(hit[0]["body"])):
                ghost = copy.deepcopy(hit[0])
                ghost["messageId"] = str(uuid.uuid4())
                ghost["body"] = json.dumps(forged)
                invoke_worker(self.faults, {"Records": [ghost]}, context())
        elif hit and kind == "forge":
            self.faults.forge(json.loads(hit[0]["body"]), sqs_record=True)
        if hit and kind == "race":
            return self._merged([{"Records": records}, copy.deepcopy({"Records": records})])
        if hit and kind == "reorder":
            handed = [r for r in records if r not in hit]
            response = invoke_worker(self.faults, {"Records": handed}, ctx) if handed else {}
            failures = list(response.get("batchItemFailures", []))
            return {"batchItemFailures": failures + [{"itemIdentifier": r["messageId"]}
                                                     for r in hit]}  # fmt: skip
        response = invoke_worker(self.faults, {"Records": records}, ctx)
        if hit and kind == "duplicate":
            # The same message received once more (same id, one more receive) by another
            # worker, after the first finished with it.
            ghost = copy.deepcopy(hit[0])
            count = int(ghost["attributes"]["ApproximateReceiveCount"])
            ghost["attributes"]["ApproximateReceiveCount"] = str(count + 1)
            extra = invoke_worker(self.faults, {"Records": [ghost]}, context())
            assert extra["batchItemFailures"] == [], "the duplicate delivery failed"
        return response

    def _strikes_hop(self, body: Any) -> bool:
        return _strikes_hop(self.faults, body)

    def _merged(self, events: list[dict[str, Any]]) -> Any:
        """Each event to its own worker, all at once; a record failed if it failed in any."""
        results = at_once([lambda e=e: invoke_worker(self.faults, e, context()) for e in events])
        for result in results:
            if isinstance(result, BaseException):
                raise result
        failed = {f["itemIdentifier"] for r in results for f in r["batchItemFailures"]}
        return {"batchItemFailures": [{"itemIdentifier": i} for i in sorted(failed)]}


class SelfInvokeCarrier:
    """Asynchronous self-invocations: each payload the worker (or the run's start) sends
    through :class:`InTestInvoke` becomes one call of the real handler, with the request id
    Lambda gave it; an invocation that dies is retried by Lambda with the same payload and
    request id (its own redeliveries, after an error, the worker sends itself)."""

    def __init__(self, invoke: InTestInvoke, faults: Injector) -> None:
        self.invoke = invoke
        self.faults = faults
        self.ready: deque[tuple[dict[str, Any], str]] = deque()
        self.late: list[tuple[dict[str, Any], str]] = []

    def _collect(self) -> None:
        """Lambda accepts each Invoke and gives it a request id."""
        sent, self.invoke.payloads[:] = list(self.invoke.payloads), []
        self.ready.extend((p, str(uuid.uuid4())) for p in sent)

    def drive(self, max_invocations: int = 2_000) -> None:
        for _ in range(max_invocations):
            self._collect()
            if not self.ready:
                if not self.late:
                    return
                self.ready.extend(self.late)
                self.late.clear()
                continue
            self._deliver(self.ready.popleft())
        raise AssertionError(f"still invoking after {max_invocations} invocations")

    def _deliver(self, item: tuple[dict[str, Any], str]) -> None:
        kind, window = self.faults.fault.kind, self.faults.fault.window
        self._collect()
        if self.ready and self.faults.strikes("race", "sibling_hops", in_worker=False):
            self._at_once([item, self.ready.popleft()])
            return
        if not _strikes_hop(self.faults, item[0].get("hop")):
            self._once(item)
        elif kind == "forge" and window == "hop":  # forged invocations, before the real one
            for hop in self.faults.forged_hops(item[0]["hop"]):
                self._once(({**item[0], "hop": hop}, str(uuid.uuid4())))
            self._once(item)
        elif kind == "forge":
            self.faults.forge(item[0]["hop"], sqs_record=False)
            self._once(item)
        elif kind == "reorder":
            self.late.append(item)
        elif kind == "race":
            self._at_once([item, item])
        else:  # duplicate: Lambda delivers the same event twice, one after the other
            self._once(item)
            self._once(item)

    def _once(self, item: tuple[dict[str, Any], str]) -> None:
        payload, request_id = item
        try:
            invoke_worker(self.faults, copy.deepcopy(payload), context(request_id))
        except SimulatedLoss:
            return  # Lambda's record of it is gone, and nobody retries it
        except SimulatedCrash:
            self.late.append(item)

    def _at_once(self, items: list[tuple[dict[str, Any], str]]) -> None:
        calls = [lambda i=i: invoke_worker(self.faults, copy.deepcopy(i[0]), context(i[1]))
                 for i in items]  # fmt: skip
        for result in at_once(calls):
            if isinstance(result, BaseException):
                raise result
