"""Three of moto's costs that grow with the data, taken off the request path (speed only).

With a thousand step items in the table and dozens of hops on the queue, moto spends most of
its time on work DynamoDB and SQS never do per request:

- TransactWriteItems snapshots every table it touches with ``copy.deepcopy`` (to roll back a
  cancelled transaction): O(table) per run's last commit. The snapshot here keeps what a
  transaction can change, which items exist (Put, Delete) and their top-level attributes
  (Update), and shares the attribute values, which moto replaces rather than mutates.
- A Query sorts *every* item of the table (``Table.all_items``) before keeping the ones it
  asked for. On the table's own key it is handed that partition only, and of it only the
  items its sort key condition keeps (tested by moto's own comparison); on an index, the
  items whose index hash key matches, unsorted (in both cases the query sorts what it
  keeps by the keys itself, so the results are the same). Without the sort key condition
  applied first, a Query of a few items of a run's partition sized and sorted all of it: a
  map of n items made each of its tasks' reads O(n). (moto also ends a page early when an
  item its condition does not keep would take the page past 1 MB; DynamoDB reads only the
  items the condition keeps, as this does.)
- Even so, picking a partition's items by sort key condition tested every item of it: a
  map's tasks each read a few step and subscriber items, from a partition that holds every
  task record committed so far, so each read cost O(n) and a map of n items O(n^2) (moto's
  time per item doubled from the first thousand items of a map to the six thousandth). A
  table with a sort key keeps each partition's sort keys in order as items come and go
  (:class:`SortedPartition`), and a Query finds its condition's items by bisection, and of
  them only those its ``ExclusiveStartKey`` and ``Limit`` leave (one more on either side,
  which moto reads to end a page as it does on the whole partition): a page of a
  partition's tasks costs its page, not the partition.
- ReceiveMessage checks each message's retention by computing every attribute of its queue
  (several scans of all its messages); nothing here lives for the 4 days of retention.

Used by the local stack's moto process (infra/moto/process.py), which runs for hours, by the
fault suite and by ``benchmarks/cost_per_step.py`` (whose Lambda durations would otherwise
measure moto's growing overheads).
"""

from __future__ import annotations

import bisect
import copy
import functools
import operator
import string
import threading
import time
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
    saved = (
        Table.all_items,
        Table.query,
        SQSBackend.is_message_valid_based_on_retention_period,
        Table.__init__,
    )
    Table.__deepcopy__ = _snapshot  # type: ignore[attr-defined]
    Table.all_items = _all_items_of(saved[0])  # type: ignore[method-assign]
    Table.query = _query_of(saved[1])  # type: ignore[method-assign]
    SQSBackend.is_message_valid_based_on_retention_period = lambda *_: True  # type: ignore[method-assign]
    Table.__init__ = _sorted_partitions_of(saved[3])  # type: ignore[method-assign]
    try:
        yield
    finally:
        del Table.__deepcopy__  # type: ignore[attr-defined]
        Table.all_items, Table.query = saved[0], saved[1]  # type: ignore[method-assign]
        SQSBackend.is_message_valid_based_on_retention_period = saved[2]  # type: ignore[method-assign]
        Table.__init__ = saved[3]  # type: ignore[method-assign]


class SortedPartition(dict[Any, Any]):
    """A partition of a table with a sort key: moto's dict of items by sort key, which also
    keeps the sort keys' values in order (``sort_values``, with ``sort_keys`` beside them), as
    moto sorts them (:func:`_sort_value`). Every way moto adds or removes an item goes
    through ``__setitem__``, ``pop`` or ``__delitem__``."""

    def __init__(self, items: Any = ()) -> None:
        super().__init__(items)
        pairs = sorted(((_sort_value(k), k) for k in dict.keys(self)), key=_first)
        self.sort_values = [value for value, _ in pairs]
        self.sort_keys = [key for _, key in pairs]

    def __setitem__(self, key: Any, item: Any) -> None:
        if key not in self:
            value = _sort_value(key)
            at = bisect.bisect_right(self.sort_values, value)
            self.sort_values.insert(at, value)
            self.sort_keys.insert(at, key)
        dict.__setitem__(self, key, item)

    def __delitem__(self, key: Any) -> None:
        dict.__delitem__(self, key)
        self._forget(key)

    def pop(self, key: Any, *default: Any) -> Any:
        if key in self:
            self._forget(key)
        return dict.pop(self, key, *default)

    def popitem(self) -> tuple[Any, Any]:
        key, item = dict.popitem(self)
        self._forget(key)
        return key, item

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        for key, item in dict(*args, **kwargs).items():
            self[key] = item

    def clear(self) -> None:
        dict.clear(self)
        self.sort_values, self.sort_keys = [], []

    def copy(self) -> SortedPartition:
        return SortedPartition(self.items())

    def __copy__(self) -> SortedPartition:
        return self.copy()

    def __deepcopy__(self, memo: dict[int, Any]) -> SortedPartition:
        return SortedPartition(
            (copy.deepcopy(k, memo), copy.deepcopy(i, memo)) for k, i in self.items()
        )

    def __reduce__(self) -> Any:
        return SortedPartition, (list(self.items()),)

    def _forget(self, key: Any) -> None:
        at = bisect.bisect_left(self.sort_values, _sort_value(key))
        while self.sort_keys[at] != key:  # sort values equal for distinct keys: N 1, 1.0
            at += 1
        del self.sort_values[at], self.sort_keys[at]


def _sorted_partitions_of(original: Any) -> Any:
    def __init__(table: Table, *args: Any, **kwargs: Any) -> None:
        original(table, *args, **kwargs)
        if table.range_key_attr:
            table.items = defaultdict(SortedPartition)

    return __init__


def _snapshot(table: Table, memo: dict[int, Any]) -> Table:
    copied = copy.copy(table)
    copied.items = defaultdict(table.items.default_factory)
    # list() copies a dict's entries in one step under the GIL: other threads' writes (the
    # local stack's handlers) may add items while the snapshot is taken.
    for key, value in list(table.items.items()):
        if isinstance(value, dict):
            entries = [(r, _item_copy(i)) for r, i in list(dict.items(value))]
            copied.items[key] = (
                SortedPartition(entries) if isinstance(value, SortedPartition) else dict(entries)
            )
        else:
            copied.items[key] = _item_copy(value)
    return copied


def _item_copy(item: Any) -> Any:
    copied = copy.copy(item)
    attrs = type(item.attrs).__new__(type(item.attrs))  # type: ignore[call-overload]  # a dict subclass
    dict.update(attrs, item.attrs)  # not one by one: moto re-sizes the whole item on each set
    copied.attrs = attrs
    return copied


def _all_items_of(original: Any) -> Any:
    def all_items(self: Table) -> list[Any]:
        wanted = getattr(_partition, "key", None)
        if wanted is None or wanted[0] is not self:
            return original(self)  # type: ignore[no-any-return]
        if wanted[1] is None:  # an index: the items its hash key conditions match
            return _matching(self, wanted[2])
        found = self.items.get(wanted[1])
        if found is None:
            return []
        if not self.range_key_attr:
            return [found]
        kept = getattr(_partition, "sort_key", None)
        if kept is None:
            return list(found.values())
        if isinstance(found, SortedPartition):
            picked = _picked_in_order(found, *kept, *_partition.page)
            if picked is not None:
                return picked
        return _kept_by_sort_key(list(found.values()), *kept[1:])

    return all_items


def _picked_in_order(
    partition: SortedPartition,
    comparison: str,
    test: Any,
    bounds: list[Any],
    limit: int | None,
    after: Any,
    forward: bool,
) -> list[Any] | None:
    """What :func:`_kept_by_sort_key` keeps, found by bisection, and narrowed to the page
    the query can answer: past ``after`` (the ExclusiveStartKey's sort value, or None) in the
    query's direction, at most ``limit`` items, and the nearest item on either side of them
    (the one moto skips as the previous page's, or reads to answer a LastEvaluatedKey, or
    stops at for the page's 1 MB). None if the condition is not one found by bisection, or
    if the items at its edges say the bisection did not find exactly what ``test`` keeps
    (moto's way is then taken)."""
    values = partition.sort_values
    span = _span(values, comparison, bounds)
    if span is None:
        return None
    low, high = span
    count = len(values)
    if (
        any(not test(values[i], *bounds) for i in {low, high - 1} if low < high)
        or (low > 0 and test(values[low - 1], *bounds))
        or (high < count and test(values[high], *bounds))
    ):
        return None
    if after is not None:  # the previous pages' items, in the query's direction
        if forward:
            low = max(low, bisect.bisect_right(values, after))
        else:
            high = min(high, bisect.bisect_left(values, after))
    if limit:
        if forward:
            high = min(high, low + limit)
        else:
            low = max(low, high - limit)
    first, last = max(low - 1, 0), min(max(high, low) + 1, count)
    return [partition[key] for key in partition.sort_keys[first:last]]


def _span(values: list[Any], comparison: str, bounds: list[Any]) -> tuple[int, int] | None:
    """The positions [low, high) of ``values`` (in order) that the sort key condition keeps."""
    try:
        if comparison in ("EQ", "="):
            return bisect.bisect_left(values, bounds[0]), bisect.bisect_right(values, bounds[0])
        if comparison in ("LT", "<"):
            return 0, bisect.bisect_left(values, bounds[0])
        if comparison in ("LE", "<="):
            return 0, bisect.bisect_right(values, bounds[0])
        if comparison in ("GT", ">"):
            return bisect.bisect_right(values, bounds[0]), len(values)
        if comparison in ("GE", ">="):
            return bisect.bisect_left(values, bounds[0]), len(values)
        if comparison == "BETWEEN":
            low = bisect.bisect_left(values, bounds[0])
            return low, max(low, bisect.bisect_right(values, bounds[1]))
        if comparison == "BEGINS_WITH" and isinstance(bounds[0], str):
            low = high = bisect.bisect_left(values, bounds[0])
            while high < len(values) and values[high].startswith(bounds[0]):
                high += 1
            return low, high
    except TypeError:  # values of another type than the bounds: moto's way
        return None
    return None


def _matching(table: Table, conditions: list[tuple[str, Any]]) -> list[Any]:
    """The items whose attributes equal every (name, value) of ``conditions``, tested as
    moto's index query tests them (present, and equal), in no particular order: the query
    then sorts them by the index's keys and the table's (unique per item)."""
    rows: list[Any] = list(table.items.values())
    items = [i for row in rows for i in row.values()] if table.range_key_attr else rows
    return [
        item for item in items
        if all((found := item.attrs.get(n)) and found == v for n, v in conditions)
    ]  # fmt: skip


def _sort_key_test(comparison: Any = None, bounds: Any = None) -> tuple[str, Any, list[Any]] | None:
    """The sort key condition of a Query, as moto tests it (``DynamoType.compare``): its
    comparison's name and function and the values it compares with, worked out once per
    query."""
    if not comparison:
        return None
    from moto.dynamodb.comparisons import get_comparison_func

    test = get_comparison_func(comparison)
    return None if test is None else (comparison, test, [b.cast_value for b in bounds or []])


def _page_of(table: Table, hash_key: Any, limit: Any = None, start: Any = None,
             forward: Any = True) -> tuple[int | None, Any, bool]:  # fmt: skip
    """(Limit, the ExclusiveStartKey's sort value or None, ScanIndexForward) of a Query of
    the table's own key. The start key is used only if it names this partition and a sort
    key of the table's type; moto's own way applies any other."""
    after = None
    if start and table.range_key_attr:
        from moto.dynamodb.models.dynamo_type import DynamoType

        try:
            hash_value = DynamoType(start[table.hash_key_attr])
            sort_key = DynamoType(start[table.range_key_attr])
        except (KeyError, TypeError, AttributeError):
            hash_value = sort_key = None
        schema_type = getattr(table, "range_key_type", None)
        if sort_key is not None and hash_value == hash_key and sort_key.type == schema_type:
            after = _sort_value(sort_key)
        else:
            return None, None, bool(forward)  # an odd start key: the whole kept range
    return (limit if isinstance(limit, int) and limit > 0 else None), after, forward is not False


_first = operator.itemgetter(0)
"""A (sort value, item) pair's sort value."""


def _kept_by_sort_key(items: list[Any], test: Any, bounds: list[Any]) -> list[Any]:
    """The items whose sort key passes ``test``, and the nearest item on either side of them.

    A sort key condition keeps a run of consecutive sort keys. moto's query walks the whole
    partition in order and, once it holds ``Limit`` items, answers a LastEvaluatedKey only if
    another item follows, kept or not: the neighbours keep that answer as it is."""
    keyed = [(_sort_value(item.range_key), item) for item in items]
    kept = [(value, item) for value, item in keyed if test(value, *bounds)]
    if not kept:
        return []
    low, high = min(kept, key=_first)[0], max(kept, key=_first)[0]
    below = max((pair for pair in keyed if pair[0] < low), key=_first, default=None)
    above = min((pair for pair in keyed if pair[0] > high), key=_first, default=None)
    return [item for _, item in kept] + [pair[1] for pair in (below, above) if pair]


def _sort_value(key: Any) -> Any:
    """``key.cast_value``, read straight off a string (most sort keys): the property tests
    five other kinds first."""
    return key.value if key.type == "S" else key.cast_value


def _query_of(original: Any) -> Any:
    def query(self: Table, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        conditions = kwargs.get("hash_key_conditions")
        if index_name is None:  # the table's own key: one partition
            _partition.key = (self, hash_key) if hash_key is not None else None
            _partition.sort_key = _sort_key_test(*args[:2])
            _partition.page = _page_of(self, hash_key, *args[2:5])
        else:  # an index spans every partition: the items with its hash key, unsorted
            _partition.key = (self, None, conditions) if conditions else None
        try:
            return original(self, hash_key, *args, **kwargs)
        finally:
            _partition.key = _partition.sort_key = _partition.page = None

    return query


@contextmanager
def faster_moto_server() -> Iterator[None]:
    """More of moto's per-request costs, found by profiling the local stack's moto process
    under benchmarks/local_load.py (py-spy), taken off the request path (speed only):

    - every request resolves its service by listing moto's package folder on disk
      (``list_of_moto_modules``: an ``os.listdir`` and an ``isdir`` per entry); the list is
      the same for the life of the process;
    - SQS reads the clock through ``datetime`` arithmetic (``unix_time_millis``) for each
      message of the queue on every receive, to tell visible and delayed messages apart;
    - SendMessage computes every attribute of the queue, message counts included (a scan
      of all its messages), to read ``ContentBasedDeduplication``, which only a FIFO queue has;
    - every request lists the methods of its service's response class with
      ``inspect.getmembers`` (``method_names_from_class``) to check the action is one of them;
      a class's methods do not change while it serves;
    - DynamoDB responses are serialized member by member from the service model: each
      attribute value of each item is a structure of ten members (S, N, B, M, L, ...), each
      looked up through alias providers, two thirds of a Query's time. moto keeps attribute
      values in their wire form already, so one made of strings, numbers' strings, booleans,
      lists and maps of the same is passed through as it is; binary ones (base64 on the wire)
      take moto's path (tests/functional/test_moto_local.py checks both give the same JSON).
    """
    import moto.backends
    import moto.core.responses as core_responses
    import moto.sqs.models as sqs_models
    from moto.core.serialize import BaseJSONSerializer
    from moto.sqs.models import Queue

    saved = (
        moto.backends.list_of_moto_modules,
        sqs_models.unix_time,
        sqs_models.unix_time_millis,
        Queue.attributes,
        SQSBackend.send_message,
        core_responses.method_names_from_class,
        BaseJSONSerializer._serialize_type_structure,
    )
    modules = frozenset(saved[0]())
    moto.backends.list_of_moto_modules = lambda: modules  # type: ignore[assignment]
    sqs_models.unix_time = _unix_time  # type: ignore[assignment]
    sqs_models.unix_time_millis = _unix_time_millis  # type: ignore[assignment]
    Queue.attributes = property(_attributes_of(saved[3]))  # type: ignore[method-assign,assignment]
    SQSBackend.send_message = _send_message_of(saved[4])  # type: ignore[method-assign]
    core_responses.method_names_from_class = functools.cache(saved[5])
    BaseJSONSerializer._serialize_type_structure = _attribute_values_as_they_are(saved[6])  # type: ignore[method-assign]
    try:
        yield
    finally:
        moto.backends.list_of_moto_modules = saved[0]  # type: ignore[assignment]
        sqs_models.unix_time, sqs_models.unix_time_millis = saved[1], saved[2]  # type: ignore[assignment]
        Queue.attributes = saved[3]  # type: ignore[method-assign]
        SQSBackend.send_message = saved[4]  # type: ignore[method-assign]
        core_responses.method_names_from_class = saved[5]
        BaseJSONSerializer._serialize_type_structure = saved[6]  # type: ignore[method-assign]


_WIRE_SCALARS = {"S": str, "N": str, "BOOL": bool, "NULL": bool}
_WIRE_SETS = ("SS", "NS")


def _attribute_values_as_they_are(original: Any) -> Any:
    def serialize_structure(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if key and shape.name == "AttributeValue" and _in_wire_form(value):
            self._default_serialize(serialized, value, shape, key)
            return
        original(self, serialized, value, shape, key)

    return serialize_structure


def _in_wire_form(value: Any) -> bool:
    """An attribute value moto's serializer would write out unchanged."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    [(kind, inner)] = value.items()
    if kind in _WIRE_SCALARS:
        return isinstance(inner, _WIRE_SCALARS[kind])
    if kind in _WIRE_SETS:
        return isinstance(inner, list) and all(isinstance(v, str) for v in inner)
    if kind == "L":
        return isinstance(inner, list) and all(_in_wire_form(v) for v in inner)
    if kind == "M":
        return isinstance(inner, dict) and all(
            isinstance(k, str) and _in_wire_form(v) for k, v in inner.items()
        )
    return False


_sending = threading.local()


def _unix_time(dt: Any = None) -> float:
    return time.time() if dt is None else _original_unix_time(dt)


def _unix_time_millis(dt: Any = None) -> float:
    return time.time() * 1000.0 if dt is None else _original_unix_time(dt) * 1000.0


def _original_unix_time(dt: Any) -> float:
    from moto.core.utils import unix_time

    return unix_time(dt)


def _attributes_of(original: Any) -> Any:
    def attributes(queue: Any) -> dict[str, Any]:
        if getattr(_sending, "active", False) and not queue.fifo_queue:
            return {}  # what SendMessage reads (ContentBasedDeduplication) is FIFO-only
        return original.fget(queue)  # type: ignore[no-any-return]

    return attributes


def _send_message_of(original: Any) -> Any:
    def send_message(*args: Any, **kwargs: Any) -> Any:
        _sending.active = True
        try:
            return original(*args, **kwargs)
        finally:
            _sending.active = False

    return send_message


@contextmanager
def transactions_undo_their_own_writes() -> Iterator[None]:
    """TransactWriteItems without a copy of the table: moto snapshots every table a
    transaction touches, to put the copy back if the transaction is cancelled (still O(table)
    with :func:`faster_moto`'s lighter copy: two thirds of the local stack's moto time in
    profiles). Here the transaction instead keeps the items it names, as they were, and a
    cancelled one puts back just those. Only correct while nothing else writes meanwhile:
    the local stack's moto process runs every DynamoDB write under one lock
    (infra/moto/fidelity.py), inside which this runs."""
    from moto.dynamodb.models import DynamoDBBackend

    saved = (Table.__dict__.get("__deepcopy__"), DynamoDBBackend.transact_write_items)
    Table.__deepcopy__ = lambda table, memo: table  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = _undoing(saved[1])  # type: ignore[method-assign]
    try:
        yield
    finally:
        if saved[0] is None:
            del Table.__deepcopy__  # type: ignore[attr-defined]
        else:
            Table.__deepcopy__ = saved[0]  # type: ignore[attr-defined]
        DynamoDBBackend.transact_write_items = saved[1]  # type: ignore[method-assign]


def _undoing(original: Any) -> Any:
    def transact_write_items(backend: Any, transact_items: list[dict[str, Any]]) -> None:
        before = [_prior(backend, item) for item in transact_items]
        try:
            original(backend, transact_items)
        except Exception:
            for prior in reversed(before):
                if prior is not None:
                    _put_back(*prior)
            raise

    return transact_write_items


def _prior(backend: Any, transact_item: dict[str, Any]) -> tuple[Table, Any, Any, Any] | None:
    """(table, hash key, range key, the item as it is now or None) for one operation."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    try:
        (op,) = transact_item.values()
        table = backend.get_table(op["TableName"])
        keys = op.get("Key") or op["Item"]
        hash_key = DynamoType(keys[table.hash_key_attr])
        range_key = DynamoType(keys[table.range_key_attr]) if table.range_key_attr else None
    except Exception:  # malformed: moto refuses it before it writes anything
        return None
    item = table.get_item(hash_key, range_key)
    return table, hash_key, range_key, None if item is None else _item_copy(item)


def _put_back(table: Table, hash_key: Any, range_key: Any, item: Any) -> None:
    if item is None:
        table.delete_item(hash_key, range_key)
    elif range_key is not None:
        table.items[hash_key][range_key] = item
    else:
        table.items[hash_key] = item


@contextmanager
def cheaper_requests() -> Iterator[None]:
    """Two more per-request costs of moto, from the same profiles (speed only):

    - every response's request id is 52 characters drawn one ``random.choice`` at a time
      (``gen_amzn_requestid_long``), about a twentieth of a GetItem's time; here they are
      drawn in one ``choices`` call, from the same alphabet and moto's same random source;
    - DeleteMessage (each entry of DeleteMessageBatch) walks the queue twice, building a
      list of every message's receipt handles for each message on the way; here it walks
      it once, comparing with the handles in place (same errors, same messages removed);
    - a new item (PutItem, a transaction's Put, a restored item) checks the 400 KB limit
      on each attribute it sets by re-sizing every attribute set before it: quadratic in
      the attributes, and a nested map is re-sized each time. Here the size is kept as a
      running total, checked at the same points against the same limit.
    """
    import moto.core.responses as core_responses
    import moto.utilities.aws_headers as aws_headers
    from moto.dynamodb.models.dynamo_type import Item
    from moto.sqs.models import Queue

    saved = (aws_headers.gen_amzn_requestid_long, Queue.delete_message, Item.__init__)
    aws_headers.gen_amzn_requestid_long = _request_id
    core_responses.gen_amzn_requestid_long = _request_id  # type: ignore[attr-defined]
    Queue.delete_message = _delete_message  # type: ignore[method-assign]
    Item.__init__ = _new_item  # type: ignore[method-assign]
    try:
        yield
    finally:
        aws_headers.gen_amzn_requestid_long = saved[0]
        core_responses.gen_amzn_requestid_long = saved[0]  # type: ignore[attr-defined]
        Queue.delete_message = saved[1]  # type: ignore[method-assign]
        Item.__init__ = saved[2]  # type: ignore[method-assign]


_REQUEST_ID_CHARACTERS = string.ascii_letters + string.digits
"""moto's ``get_random_string`` alphabet (letters and digits)."""


def _request_id(headerdict: dict[str, Any] | None = None) -> str:
    from moto.moto_api._internal import mock_random

    request_id = "".join(mock_random.choices(_REQUEST_ID_CHARACTERS, k=52))
    if isinstance(headerdict, dict):
        headerdict["x-amzn-requestid"] = request_id
    return request_id


def _delete_message(queue: Any, receipt_handle: str) -> None:
    from moto.sqs.exceptions import ReceiptHandleIsInvalid

    if receipt_handle in queue.deleted_messages:  # deleted before: SQS accepts it again
        return
    kept, found = [], False
    for message in queue._messages:
        if message.receipt_handle == receipt_handle or (
            receipt_handle in message._old_receipt_handles
        ):
            found = True
            queue.pending_messages.discard(message)
            queue.deleted_messages.update(message.all_receipt_handles)
        else:
            kept.append(message)
    if not found:
        raise ReceiptHandleIsInvalid()
    queue._messages = kept


_ITEM_SIZE_LIMIT = 405000
"""moto's limit (``LimitedSizeDict``): DynamoDB's 400 KB, as measured against the service."""


def _new_item(item: Any, hash_key: Any, range_key: Any, attrs: dict[str, Any]) -> None:
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.dynamo_type import DynamoType, LimitedSizeDict
    from moto.dynamodb.models.utilities import bytesize

    item.hash_key, item.range_key = hash_key, range_key
    item.attrs = LimitedSizeDict()
    size = 0
    for key, value in attrs.items():
        typed = DynamoType(value)
        size += bytesize(key) + typed.size()
        if size > _ITEM_SIZE_LIMIT:
            raise ItemSizeTooLarge
        dict.__setitem__(item.attrs, key, typed)
