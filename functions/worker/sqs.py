"""The SQS carrier: a Powertools batch handler for the step queue's hop messages.

The step queue's ``maxReceiveCount`` is ``HOPGRAPH_STEP_MAX_RECEIVES``. The delivery id is
the SQS message id (stable across redeliveries) and the attempt is
``ApproximateReceiveCount``. A failed record is reported in ``batchItemFailures``; SQS
redelivers it after the visibility timeout. On the last allowed receive the worker first
marks the run failed (:func:`functions.worker.hops.apply_hop`), so that the run is not left
running when SQS moves the message to the DLQ on its next receive. A message that is not a
hop fails every receive, and so is left to reach the DLQ.

The records of a batch are applied concurrently. A hop runs a tool, and an agent's tools
mostly wait (an LLM call, an HTTP fetch): one after another, a batch of ten 50 ms hops takes
500 ms; side by side, about 50 ms. :class:`ConcurrentBatchProcessor` is Powertools'
``BatchProcessor`` (its record parsing, its success and failure bookkeeping, its partial
batch response naming exactly the records that raised) whose ``process`` hands the records
to a thread pool instead of looping over them. Each record runs in its own copy of the
calling thread's context variables, as ``asyncio.to_thread`` would run it, so per-record log
keys (:func:`functions.observability.log_keys`) stay apart and what the caller put there (the
local stack's current invocation, infra/stack/invocations.py) is seen by every record.

Why not Powertools' ``AsyncBatchProcessor`` with the record handler in ``asyncio.to_thread``:
outside Lambda, ``async_process_partial_response`` runs its loop with ``asyncio.run``, which
leaves the calling thread without an event loop, and the next Mangum handler called in that
thread (the API, in the local tools and the tests) fails with "There is no current event
loop"; and ``to_thread``'s default executor has ``min(32, cpus + 4)`` threads, six on a
two-vCPU Lambda, which would split a batch of ten into two waves. The hops are synchronous
code, so a thread pool is all there is to it.

The pool has :data:`MAX_CONCURRENT_HOPS` threads (the step queue's ``BatchSize`` in
template.yaml): a whole batch at once, which botocore's default pool of ten connections per
client also serves. It belongs to the thread that calls the handler, and is kept for that
thread's next batch: on Lambda that is the one invocation thread, so each warm invocation
reuses the threads of the last; the local stack calls this handler from several pollers at
once, and each poller's batches have a pool of their own, never another's. (A pool per
batch started and ended ten threads a batch: a twentieth of the local stack's handler time
under benchmarks/local_load.py.) The metrics are the invocation's, and
:mod:`functions.observability` adds to them under a lock.
"""

from __future__ import annotations

import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from engine.deadlines import invocation_limit
from functions.observability import log_keys
from functions.worker.hops import MalformedHop, apply_hop, malformed, parse_hop, remaining_s

MAX_CONCURRENT_HOPS = 10
"""Records of one batch applied at once: the step queue's ``BatchSize``, so all of them."""


def sqs_record(record: SQSRecord) -> str:
    """Powertools record handler: one hop message of the step queue."""
    attempt = int(record.attributes.approximate_receive_count or 1)
    try:
        hop = parse_hop(record.body)
    except MalformedHop as exc:
        malformed(str(exc), message_id=record.message_id, attempt=attempt)
        raise
    with log_keys(run_id=hop.run_id, seq=hop.seq):
        return apply_hop(hop, record.message_id, attempt)


_pools = threading.local()
"""The calling thread's pool and its size (``sized``), kept between its batches."""


def _callers_pool() -> ThreadPoolExecutor:
    size, pool = getattr(_pools, "sized", (0, None))
    if pool is None or size != MAX_CONCURRENT_HOPS:  # the first batch, or a new size
        if pool is not None:
            pool.shutdown(wait=False)
        pool = ThreadPoolExecutor(MAX_CONCURRENT_HOPS, thread_name_prefix="hop")
        _pools.sized = (MAX_CONCURRENT_HOPS, pool)
    return pool


class ConcurrentBatchProcessor(BatchProcessor):
    """Powertools' ``BatchProcessor``, the records of a batch applied on a thread pool."""

    def process(self) -> list[tuple[Any, ...]]:
        # Each record in its own copy of this thread's context, taken here, before the pool.
        contexts = [contextvars.copy_context() for _ in self.records]
        # success_handler and failure_handler only append to lists: safe from threads.
        return list(_callers_pool().map(self._process_in, contexts, self.records))

    def _process_in(self, context: contextvars.Context, record: dict[str, Any]) -> tuple[Any, ...]:
        return context.run(self._process_record, record)


def handle_sqs_batch(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A batch of hop messages, applied concurrently; failed records are reported in
    ``batchItemFailures``."""
    # A processor per batch, not per module: it keeps the batch's results on itself, and the
    # local stack calls this handler from several threads at once.
    processor = ConcurrentBatchProcessor(
        event_type=EventType.SQS, raise_on_entire_batch_failure=False
    )
    with invocation_limit(remaining_s(context)):
        response = process_partial_response(
            event=event, record_handler=sqs_record, processor=processor, context=context
        )
    return dict(response)
