"""Hops that concurrent callers send to one queue share SendMessageBatch calls.

The worker applies many hops at once (an SQS batch's records on a thread pool; the local
stack's pollers), and each hop ends by sending its run's next hop. Sent one SendMessage each,
that is one request per step; sent together, up to ten hops are one request (SQS bills a
batch as one request per 64 KB of payload), which is most of the queue's cost per step.

The rule is a group commit: a caller that finds no send in flight sends its message at
once, so an idle worker adds no delay; callers that arrive while a send is in flight wait,
and the next send takes all of them, ten (and 256 KB) to a call. Each caller returns only
once its own message was accepted, and raises if it was not: a hop is still sent before its
record is acknowledged, which is all the run protocol asks of a dispatch. The caller whose
message has gone hands the sending over to one that waits, so no caller sends for others
without end.

Only messages of one partition share a call (:func:`partition_by`): on AWS an execution
environment runs one invocation at a time, so all of its sends carry the same trace header,
which is how Lambda follows a chain of invocations; the local stack runs many invocations in
one process and partitions by invocation, so that each message still carries its own.

Hand-written: boto3 has no batching client (the Java SDK's ``SqsAsyncBatchManager`` batches
on a timer, which would delay an idle worker's every hop).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

BATCH_ENTRIES = 10
"""SendMessageBatch's limit of entries per call."""
BATCH_BYTES = 256 * 1024
"""SendMessageBatch's limit of payload per call (the bodies together)."""

Body = TypeVar("Body")
"""What is sent: a message body (``str``), or a body with what goes beside it in its entry."""

SendBatch = Callable[[list[Body]], list[str | None]]
"""Sends bodies in one call; per body, ``None`` if accepted, else why not. Raises if the
call itself failed."""


def utf8_size(body: str) -> int:
    return len(body.encode())


class SendRefused(RuntimeError):
    """The queue did not accept a message of a batch it took (the entry failed)."""


_partition: Callable[[], Hashable] = lambda: None  # noqa: E731


def partition_by(key: Callable[[], Hashable]) -> None:
    """Let only messages whose callers give the same ``key()`` share a call."""
    global _partition
    _partition = key


@dataclass(eq=False)
class _Message(Generic[Body]):
    body: Body
    size: int
    done: bool = False
    error: BaseException | None = None


@dataclass(eq=False)
class _Line:
    """The messages of one partition waiting to go, and whether one of them is sending."""

    waiting: list[_Message[object]] = field(default_factory=list)
    sending: bool = False


class SendGroup(Generic[Body]):
    """Sends messages for many threads at once, batched as the module docstring says.
    ``size``: a body's bytes against SendMessageBatch's 256 KB (bodies are strings unless
    it says otherwise)."""

    def __init__(
        self,
        send_batch: SendBatch[Body],
        size: Callable[[Body], int] = utf8_size,  # type: ignore[assignment]
    ) -> None:
        self._send_batch = send_batch
        self._size = size
        self._cond = threading.Condition()
        self._lines: dict[Hashable, _Line] = {}

    def send(self, body: Body) -> None:
        """Send ``body``; returns once the queue accepted it. Raises SendRefused if the queue
        refused it, or what the call that carried it raised."""
        mine: _Message[object] = _Message(body, self._size(body))
        key = _partition()
        with self._cond:
            line = self._lines.setdefault(key, _Line())
            line.waiting.append(mine)
            while line.sending and not mine.done:
                self._cond.wait()
            lead = not mine.done
            line.sending = line.sending or lead
        if lead:
            self._lead(key, line, mine)
        if mine.error is not None:
            raise mine.error

    def _lead(self, key: Hashable, line: _Line, mine: _Message[object]) -> None:
        """Send batches from the head of the line until ``mine`` has gone, then let a
        waiting caller take over (also if this thread is stopped on the way)."""
        batch: list[_Message[object]] = []
        try:
            while not mine.done:
                with self._cond:
                    batch = _take(line.waiting)
                self._send(batch)
        finally:
            with self._cond:
                for message in batch:  # stopped before SQS answered: sent or not, unknown
                    if not message.done:
                        message.error = SendRefused("the sending thread stopped first")
                        message.done = True
                line.sending = False
                if not line.waiting and self._lines.get(key) is line:
                    del self._lines[key]
                self._cond.notify_all()

    def _send(self, batch: list[_Message[object]]) -> None:
        errors: list[BaseException | None]
        try:
            refusals = self._send_batch([m.body for m in batch])  # type: ignore[misc]
            errors = [SendRefused(r) if r is not None else None for r in refusals]
        except Exception as exc:  # the whole call failed: every message of it did
            errors = [exc] * len(batch)
        with self._cond:
            for message, error in zip(batch, errors, strict=True):
                message.error, message.done = error, True
            self._cond.notify_all()


def _take(waiting: list[_Message[object]]) -> list[_Message[object]]:
    """The head of the line, as much as one SendMessageBatch takes."""
    batch: list[_Message[object]] = []
    size = 0
    while waiting and len(batch) < BATCH_ENTRIES:
        if batch and size + waiting[0].size > BATCH_BYTES:
            break
        batch.append(waiting.pop(0))
        size += batch[-1].size
    return batch
