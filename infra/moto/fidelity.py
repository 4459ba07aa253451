"""Make moto's DynamoDB keep DynamoDB's per-item atomicity when several threads use it.

moto applies a transaction item by item and rolls a cancelled one back by putting back a
deep copy of the whole table taken when it began, without a lock: with threads, a losing
transaction's rollback erases what a concurrent winner committed meanwhile. Its conditional
PutItem is a read then a write, also unlocked. The local stack runs several pollers and the
API's thread pool against one in-process moto, so every DynamoDB write goes through one
re-entrant lock (BatchWriteItem goes through put_item and delete_item; transactions call them
too). Reads take the lock as well: moto's Query and Scan iterate the table's dicts while a
write may resize them ("dictionary changed size during iteration"). Emulator fidelity only:
the store's code is the same on AWS.

The local stack's moto process also passes the same lock to :func:`serialize_sqs`, so that
its snapshots (infra/moto/persistence.py) see one instant of both services; there, too,
SendMessageBatch keeps its entries' trace headers, which moto drops.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

_OPERATIONS = (
    "put_item",
    "update_item",
    "delete_item",
    "transact_write_items",
    "get_item",
    "query",
    "scan",
    "batch_get_item",
    "transact_get_items",
)


_SQS_OPERATIONS = (
    "create_queue",
    "delete_queue",
    "set_queue_attributes",
    "send_message",
    "delete_message",
    "change_message_visibility",
    "purge_queue",
)


def serialize_dynamodb_writes(
    lock: threading.RLock | None = None,
) -> contextlib.AbstractContextManager[None]:
    """A context manager during which moto's DynamoDB operations run one at a time (under
    ``lock`` if given, so that other code can hold them all off)."""
    return _serialized(lock or threading.RLock())


@contextlib.contextmanager
def serialize_sqs(lock: threading.RLock) -> Iterator[None]:
    """Inside the block, moto's SQS operations that change messages take ``lock`` too.

    ReceiveMessage takes it for each pass over the queue, never while it long-polls: a
    receive that waits must not hold off the send it is waiting for."""
    from moto.sqs.models import SQSBackend

    names = (*_SQS_OPERATIONS, "receive_message", "send_message_batch")
    originals = {name: SQSBackend.__dict__[name] for name in names}
    for name in _SQS_OPERATIONS:
        setattr(SQSBackend, name, _locked(lock, originals[name]))
    SQSBackend.receive_message = _receive_in_passes(lock, originals["receive_message"])
    SQSBackend.send_message = _with_batch_entry_attributes(SQSBackend.send_message)
    SQSBackend.send_message_batch = _keeping_system_attributes(originals["send_message_batch"])
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(SQSBackend, name, original)


_batch_entries = threading.local()
"""The system attributes of a SendMessageBatch's entries, for its sends one by one."""


def _keeping_system_attributes(original: Any) -> Any:
    """SendMessageBatch keeps each entry's ``MessageSystemAttributes`` (the AWSTraceHeader
    Lambda follows a chain of invocations by), as SQS does; moto's sends them without."""

    def send_message_batch(backend: Any, queue_name: str, entries: dict[str, Any]) -> Any:
        _batch_entries.pending = [e.get("MessageSystemAttributes") for e in entries.values()]
        try:
            return original(backend, queue_name, entries)
        finally:
            _batch_entries.pending = None

    return send_message_batch


def _with_batch_entry_attributes(original: Any) -> Any:
    def send_message(*args: Any, **kwargs: Any) -> Any:
        pending = getattr(_batch_entries, "pending", None)
        if pending:  # moto sends a batch's entries in order, one call each
            system = pending.pop(0)
            if system and not kwargs.get("system_attributes"):
                kwargs["system_attributes"] = system
        return original(*args, **kwargs)

    return send_message


def _locked(lock: threading.RLock, original: Any) -> Any:
    def locked(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return original(*args, **kwargs)

    return locked


def _receive_in_passes(lock: threading.RLock, original: Any) -> Any:
    def receive_message(
        backend: Any,
        queue_name: str,
        count: int,
        wait_seconds_timeout: int,
        visibility_timeout: int,
        message_attribute_names: list[str] | None = None,
    ) -> Any:
        deadline = time.monotonic() + int(wait_seconds_timeout or 0)
        while True:
            with lock:  # one pass, as moto's own receive without a wait time
                found = original(
                    backend, queue_name, count, 0, visibility_timeout, message_attribute_names
                )
            remaining = deadline - time.monotonic()
            if found or remaining <= 0:
                return found
            backend.get_queue(queue_name).wait_for_messages(min(1.0, remaining))

    return receive_message


@contextlib.contextmanager
def _serialized(lock: threading.RLock) -> Iterator[None]:
    from moto.dynamodb.models import DynamoDBBackend

    originals = {name: DynamoDBBackend.__dict__[name] for name in _OPERATIONS}
    for name, original in originals.items():
        setattr(DynamoDBBackend, name, _locked(lock, original))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(DynamoDBBackend, name, original)
