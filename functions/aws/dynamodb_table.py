"""The table's I/O under every part of the DynamoDB store: calls and their errors, conditional
puts, transactions, batches and paging, large values kept in S3 (engine/blobs.py), and the TTL
of log items.

:class:`TableIO` holds the store's connection and caches; each part of the store
(:mod:`~functions.aws.dynamodb_steps`, :mod:`~functions.aws.dynamodb_pauses`,
:mod:`~functions.aws.dynamodb_folds`, :mod:`~functions.aws.dynamodb_connections`) subclasses
it, and :class:`~functions.aws.dynamodb_store.DynamoRunStore` is all of them together.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from engine import blobs, deltas
from engine.errors import NotFoundError, RecordTooLargeError, TransientStoreError
from engine.ports import Clock, RunRecord
from functions.aws import dynamodb_items as items
from functions.aws.dynamodb_items import Item
from functions.aws.errors import (
    CONDITION_FAILED,
    cancellation_reasons,
    error_code,
    raise_store_error,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

SLOT_FREE = "attribute_not_exists(PK)"
MAX_TRANSACTION = 100
"""Items one TransactWriteItems may hold."""
BATCH_SIZE = 25  # BatchWriteItem's limit
BATCH_RETRIES = 5


class _Values:
    """The large values a store read lately, by blob key (a few at most: the state cache
    keeps whole states; this saves fetching a value again on a cold rebuild)."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._max = max_bytes
        self._found: dict[str, tuple[int, Any]] = {}
        self._bytes = 0

    def get(self, key: str) -> Any:
        found = self._found.get(key)
        return None if found is None else found[1]

    def put(self, key: str, data: bytes) -> Any:
        value = json.loads(data)
        if self._bytes + len(data) > self._max:
            self._found.clear()
            self._bytes = 0
        self._found[key] = (len(data), value)
        self._bytes += len(data)
        return value


class SlotTaken(Exception):
    """Internal to the store: a create-if-absent write found the item there."""


def fitting(item: Item, what: str) -> Item:
    """``item`` if DynamoDB can store it; else RecordTooLargeError (413), before any write.

    Checked here rather than mapped from the failed write: DynamoDB refuses an item over
    400 KB with a plain ValidationException that only its message tells apart from other
    mistakes, and adapters do not match messages. ``item_size`` follows DynamoDB's published
    sizing (attribute names plus values), so the check is the service's own limit."""
    size = items.item_size(item)
    if size > items.MAX_ITEM_BYTES:
        raise RecordTooLargeError(what, size, items.MAX_ITEM_BYTES)
    return item


class TableIO:
    """The table's I/O that every part of the DynamoDB store uses (see template.yaml).

    ``client`` is a low-level boto3 DynamoDB client; ``clock`` decides which connections
    have expired (DynamoDB's TTL deletes items only eventually, up to days later).
    """

    def __init__(
        self,
        table_name: str,
        client: DynamoDBClient,
        *,
        clock: Clock = time.time,
        blob_store: blobs.BlobStore | None = None,
        retention_s: float = 0,
    ) -> None:
        self.table = table_name
        self._retention_s = retention_s
        """How long after it is written a log item (step, task, task count, attempt) expires:
        its ``expires_at`` for DynamoDB's TTL (:func:`_expiring`); 0: never."""
        self._client = client
        self._clock = clock
        self._blobs = blob_store
        """Where values too large for an item go (engine/blobs.py); ``None``: nowhere, and a
        state must fit in an item."""
        self._known: dict[str, set[str]] = {}
        """Per run, the digests of the blobs it has (written or read): not written again."""
        self._values = _Values()
        self._states = deltas.StateCache()
        """The last state of each run this store read or wrote (a warm worker's): the next
        hop of the run reads only the deltas after it, and its commit knows the state before
        it (engine/deltas.py)."""

    # -- calls -----------------------------------------------------------------------------
    def _call(
        self,
        operation: str,
        *,
        conflict: Exception | None = None,
        invalid: Exception | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        try:
            response: dict[str, Any] = getattr(self._client, operation)(**kwargs)
        except ClientError as exc:
            raise_store_error(exc, table=self.table, conflict=conflict, invalid=invalid)
        return response

    def _query(self, invalid: Exception | None, **kwargs: Any) -> dict[str, Any]:
        return self._call("query", invalid=invalid, **kwargs)

    # -- large values (engine/blobs.py) ----------------------------------------------------
    def _stash(self, run_id: str, values: dict[str, Any], above: int = blobs.BLOB_ABOVE
               ) -> dict[str, Any]:  # fmt: skip
        if self._blobs is None:
            return values
        if len(self._known) > 1024:
            self._known.clear()
        known = self._known.setdefault(run_id, set())
        return blobs.stash(values, run_id, self._blobs, known, above)

    def _restore(self, run_id: str, values: dict[str, Any]) -> dict[str, Any]:
        if self._blobs is None:
            return values
        return blobs.restore(values, run_id, self._fetch)

    def _fetch(self, key: str) -> Any:
        assert self._blobs is not None
        value = self._values.get(key)
        if value is None:
            try:
                value = self._values.put(key, self._blobs.get(key))
            except KeyError:
                raise NotFoundError("value", key) from None  # past its run's retention
        return value

    def _stashed(self, run_id: str, stored: deltas.Stored) -> deltas.Stored:
        """``stored`` with its large values in blobs and pointers in their place."""
        return self._each_value(stored, lambda values: self._stash(run_id, values))

    def _restored(self, run_id: str, stored: deltas.Stored) -> deltas.Stored:
        return self._each_value(stored, lambda values: self._restore(run_id, values))

    def _each_value(
        self, stored: deltas.Stored, change: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> deltas.Stored:
        """``stored`` with ``change`` applied to its state and its delta's values (a step
        keeps values in those three places); as it is when there is no bucket."""
        if self._blobs is None:
            return stored
        delta = dict(stored.delta)
        for part in ("set", "append"):
            if part in delta:
                delta[part] = change(delta[part])
        state = None if stored.state is None else change(stored.state)
        return deltas.Stored(stored.seq, delta, state)

    def _header(self, item: Item) -> RunRecord:
        run = items.run_from_item(item)
        return replace(run, input=self._restore(run.run_id, run.input))

    def _expiring(self, item: Item) -> Item:
        """``item`` with its TTL (``expires_at``, epoch seconds) when log items expire.

        Set when the item is written, not when its run ends: stamping a finished run's items
        then would rewrite every one of them (a write unit each at least, more for a
        snapshot: about doubling a step's write cost), so a log item expires
        ``retention_s`` after it was written, as the bucket's lifecycle rule expires a value
        (template.yaml ``RetentionDays``). The run header never expires."""
        if self._retention_s > 0:
            item["expires_at"] = items.num(int(self._clock() + self._retention_s))
        return item

    def _put_new(self, item: Item, conflict: Exception) -> None:
        """Write ``item`` only where none is; ``conflict`` is raised if one already was."""
        self._call(
            "put_item", conflict=conflict, TableName=self.table, Item=item,
            ConditionExpression=SLOT_FREE,
        )  # fmt: skip

    def _get(self, key: Item) -> Item | None:
        found: Item | None = self._call(
            "get_item", TableName=self.table, Key=key, ConsistentRead=True
        ).get("Item")
        return found

    def _transact(self, actions: list[dict[str, Any]]) -> list[str] | None:
        """Run a transaction: ``None`` once committed, else the per-item reason codes of a
        cancellation caused by a failed condition. The request token makes botocore's own
        retries of a transaction that did commit succeed instead of failing its conditions."""
        try:
            self._client.transact_write_items(
                TransactItems=actions,  # type: ignore[arg-type]
                ClientRequestToken=uuid.uuid4().hex,
            )
        except ClientError as exc:
            reasons = cancellation_reasons(exc)
            if error_code(exc) == "TransactionCanceledException" and CONDITION_FAILED in reasons:
                return reasons
            raise_store_error(exc, table=self.table)
        return None

    def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        for start in range(0, len(requests), BATCH_SIZE):
            pending = requests[start : start + BATCH_SIZE]
            for attempt in range(BATCH_RETRIES):
                response = self._call("batch_write_item", RequestItems={self.table: pending})
                pending = response.get("UnprocessedItems", {}).get(self.table, [])
                if not pending:
                    break
                time.sleep(0.05 * 2**attempt)  # unprocessed items mean throttling: back off
            if pending:
                raise TransientStoreError(f"{len(pending)} batch writes left unprocessed")

    def _run_items(self, run_id: str, prefix: str) -> Iterator[Item]:
        """Every item of a run whose sort key starts with ``prefix`` (a superstep's tasks,
        attempts or pauses), read strongly consistently: one query, paged at 1 MB."""
        return self._query_all(
            KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
            ExpressionAttributeValues={":pk": {"S": f"RUN#{run_id}"}, ":prefix": {"S": prefix}},
            ConsistentRead=True,
        )

    def _query_all(self, **kwargs: Any) -> Iterator[Item]:
        while True:
            response = self._call("query", TableName=self.table, **kwargs)
            yield from response.get("Items", [])
            if "LastEvaluatedKey" not in response:
                return
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
