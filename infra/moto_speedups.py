"""Three of moto's costs that grow with the data, taken off the request path (speed only).

With a thousand step items in the table and dozens of hops on the queue, moto spends most of
its time on work DynamoDB and SQS never do per request:

- TransactWriteItems snapshots every table it touches with ``copy.deepcopy`` (to roll back a
  cancelled transaction): O(table) per run's last commit. The snapshot here keeps what a
  transaction can change, which items exist (Put, Delete) and their top-level attributes
  (Update), and shares the attribute values, which moto replaces rather than mutates.
- A Query on the table's own key sorts *every* item of the table before keeping the
  partition it asked for (``Table.all_items``); here it is handed that partition only (the
  query sorts its results by range key itself).
- ReceiveMessage checks each message's retention by computing every attribute of its queue
  (several scans of all its messages); nothing here lives for the 4 days of retention.

Used by the local stack's moto process (infra/moto_process.py), which runs for hours, by the
fault suite and by ``benchmarks/cost_per_step.py`` (whose Lambda durations would otherwise
measure moto's growing overheads).
"""

from __future__ import annotations

import copy
import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from moto.dynamodb.models.table import Table
from moto.sqs.models import SQSBackend

_partition = threading.local()


@contextmanager
def faster_moto() -> Iterator[None]:
    """Patch moto (this process, inside the block) as described in the module docstring."""
    saved = (Table.all_items, Table.query, SQSBackend.is_message_valid_based_on_retention_period)
    Table.__deepcopy__ = _snapshot  # type: ignore[attr-defined]
    Table.all_items = _all_items_of(saved[0])  # type: ignore[method-assign]
    Table.query = _query_of(saved[1])  # type: ignore[method-assign]
    SQSBackend.is_message_valid_based_on_retention_period = lambda *_: True  # type: ignore[method-assign]
    try:
        yield
    finally:
        del Table.__deepcopy__  # type: ignore[attr-defined]
        Table.all_items, Table.query = saved[0], saved[1]  # type: ignore[method-assign]
        SQSBackend.is_message_valid_based_on_retention_period = saved[2]  # type: ignore[method-assign]


def _snapshot(table: Table, memo: dict[int, Any]) -> Table:
    copied = copy.copy(table)
    copied.items = defaultdict(dict)
    for key, value in table.items.items():
        if isinstance(value, dict):
            copied.items[key] = {r: _item_copy(i) for r, i in value.items()}
        else:
            copied.items[key] = _item_copy(value)
    return copied


def _item_copy(item: Any) -> Any:
    copied = copy.copy(item)
    attrs = type(item.attrs).__new__(type(item.attrs))
    dict.update(attrs, item.attrs)  # not one by one: moto re-sizes the whole item on each set
    copied.attrs = attrs
    return copied


def _all_items_of(original: Any) -> Any:
    def all_items(self: Table) -> list[Any]:
        wanted = getattr(_partition, "key", None)
        if wanted is None or wanted[0] is not self:
            return original(self)  # type: ignore[no-any-return]
        found = self.items.get(wanted[1])
        if found is None:
            return []
        return list(found.values()) if self.range_key_attr else [found]

    return all_items


def _query_of(original: Any) -> Any:
    def query(self: Table, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        # Only a query on the table's own key reads one partition; an index spans them all.
        _partition.key = (self, hash_key) if index_name is None and hash_key is not None else None
        try:
            return original(self, hash_key, *args, **kwargs)
        finally:
            _partition.key = None

    return query
