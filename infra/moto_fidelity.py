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
"""

from __future__ import annotations

import contextlib
import threading
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


def serialize_dynamodb_writes() -> contextlib.AbstractContextManager[None]:
    """A context manager during which moto's DynamoDB operations run one at a time."""
    return _serialized()


@contextlib.contextmanager
def _serialized() -> Iterator[None]:
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    originals = {name: DynamoDBBackend.__dict__[name] for name in _OPERATIONS}
    for name, original in originals.items():

        def locked(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return _original(*args, **kwargs)

        setattr(DynamoDBBackend, name, locked)
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(DynamoDBBackend, name, original)
