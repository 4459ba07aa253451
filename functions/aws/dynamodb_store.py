"""The DynamoDB :class:`~engine.ports.RunStore`: one table, every write keyed by run and step.

Item shapes are in :mod:`functions.aws.dynamodb_items`. What each method costs, and why:

- ``commit_step`` without ``end`` is the worker's critical path: ONE conditional PutItem of
  the step item (``attribute_not_exists(PK)``: each slot is written once). The run header is
  neither read nor written, so a step with a ~1 KB state costs 1 write unit and nothing else.
  The price of that: a step committed for a run that was never created is not detected.
- ``commit_step`` with ``end`` (the run's last step) is a transaction: put the step and set
  the header's final status, conditional on the slot being empty and the run still running::

      TransactWriteItems
        Put    RUN#r / STEP#n   if attribute_not_exists(PK)   -- the slot is free
        Update RUN#r / RUN      if status = running           -- nobody ended the run first
      either condition fails -> nothing is written -> StepConflict

- A cancel (:func:`engine.commands.cancel_run`) and a dead letter's failure are the same
  transaction: every lifecycle transition is ``commit_step`` with ``end``.
- ``get_run`` reads the header and the latest step (two strongly consistent reads): the
  header holds only what changes at creation and at the end, the step holds the state.
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
from engine.errors import (
    ConflictError,
    GraphNotFound,
    NotFoundError,
    RecordTooLargeError,
    RunNotFound,
    StateTooLargeError,
    StepConflict,
    TransientStoreError,
)
from engine.ports import (
    AttemptRecord,
    Clock,
    Connection,
    Deadline,
    FoldRecord,
    GraphRecord,
    Page,
    PauseRecord,
    RunEnd,
    RunRecord,
    RunStatus,
    Slot,
    StepRecord,
    TaskRecord,
)
from functions.aws import dynamodb_items as items
from functions.aws import dynamodb_pages as pages
from functions.aws import dynamodb_pauses as pauses
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
LAST_STEP_SK = items.step_sk(999_999)
BATCH_SIZE = 25  # BatchWriteItem's limit
HEADER_BLOB_ABOVE = 4 * 1024
"""A run's input value larger than this (bytes of JSON) is kept as a blob when the store has
a bucket: the header is rewritten at the run's end (a transaction: twice its size in write
units) and copied into three indexes, so a 50 KB input would cost ~200 write units a run;
a blob costs one S3 PUT (once) and a GET on each cold read of the input."""
SLOT_PAGE = 16
"""Items per page of a slot read: the origin and a few subscribers in one page, and a stray
hop of a long run reads no more than this of its later steps."""
BATCH_RETRIES = 5


def _step_seq(item: Item) -> int:
    """The seq of a step item; -1 for any other item."""
    sk = item["SK"]["S"]
    return int(sk[len(items.STEP_PREFIX) :]) if sk.startswith(items.STEP_PREFIX) else -1


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


class _SlotTaken(Exception):
    """Internal: a create-if-absent write found the item there."""


def _fitting(item: Item, what: str) -> Item:
    """``item`` if DynamoDB can store it; else RecordTooLargeError (413), before any write.

    Checked here rather than mapped from the failed write: DynamoDB refuses an item over
    400 KB with a plain ValidationException that only its message tells apart from other
    mistakes, and adapters do not match messages. ``item_size`` follows DynamoDB's published
    sizing (attribute names plus values), so the check is the service's own limit."""
    size = items.item_size(item)
    if size > items.MAX_ITEM_BYTES:
        raise RecordTooLargeError(what, size, items.MAX_ITEM_BYTES)
    return item


class DynamoRunStore:
    """A :class:`~engine.ports.RunStore` on one DynamoDB table (see template.yaml).

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

    # -- graphs ----------------------------------------------------------------------------
    def put_graph(self, graph: GraphRecord) -> None:
        self._put_new(
            _fitting(items.graph_item(graph), "graph"),
            ConflictError(f"graph {graph.graph_id!r} already exists"),
        )

    def get_graph(self, graph_id: str) -> GraphRecord:
        item = self._get(items.graph_key(graph_id))
        if item is None:
            raise GraphNotFound(graph_id)
        return items.graph_from_item(item)

    def list_graphs(
        self, limit: int = 50, cursor: str | None = None, owner: str | None = None
    ) -> Page[GraphRecord]:
        if owner is None:
            index, partition = "GSI1", items.GRAPHS_PARTITION
        else:
            index, partition = "GSI3", items.owner_partition(owner, "GRAPHS")
        found, next_cursor = pages.index_page(
            self._query, self.table, index, partition, limit, cursor
        )
        return Page([items.listed_graph_from_item(i) for i in found], next_cursor)

    # -- runs ------------------------------------------------------------------------------
    def create_run(self, run: RunRecord, first: StepRecord | None = None) -> tuple[RunRecord, bool]:
        # The header is written again when the run ends (its status), and each of its indexes
        # copies it: a large input would be paid for on every one of those writes.
        stashed = replace(run, input=self._stash(run.run_id, run.input, HEADER_BLOB_ABOVE))
        header = _fitting(items.run_item(stashed), "run")
        if first is not None:
            return self._create_with_first(run, header, first)
        try:
            self._put_new(header, _SlotTaken())
        except _SlotTaken:
            return self.get_run(run.run_id), False
        return run.with_latest(None), True

    def _create_with_first(
        self, run: RunRecord, header: Item, first: StepRecord
    ) -> tuple[RunRecord, bool]:
        """The header and its slot-0 step in one transaction (a fork: both or neither)."""
        stored, since = self._lean(first)  # a fork's first entry: its full state
        puts = [header, self._expiring(self._step_item(first, self._stashed(run.run_id, stored)))]
        reasons = self._transact(
            [{"Put": {"TableName": self.table, "Item": i, "ConditionExpression": SLOT_FREE}}
             for i in puts]
        )  # fmt: skip
        if reasons is not None:
            return self.get_run(run.run_id), False
        self._states.put(run.run_id, first.seq, first.state, since)
        return run.with_latest(first), True

    def get_run(self, run_id: str) -> RunRecord:
        header = self._get(items.run_key(run_id))
        if header is None:
            raise RunNotFound(run_id)
        latest = self._latest_step(run_id)
        run = self._header(header)
        if latest is not None and latest.run_status != run.status:
            # A transition (an end, a redrive) landed between the two reads; it wrote the
            # header atomically with the step, so reading the header again shows it.
            run = self._header(self._get(items.run_key(run_id)) or header)
        return run.with_latest(latest)

    def _latest_step(self, run_id: str) -> StepRecord | None:
        response = self._call(
            "query",
            TableName=self.table,
            KeyConditionExpression="PK = :pk AND begins_with(SK, :step)",
            ExpressionAttributeValues={":pk": {"S": f"RUN#{run_id}"}, ":step": {"S": "STEP#"}},
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
        )
        found = response.get("Items", [])
        if not found:
            return None
        if "state" in found[0]:
            stored = self._restored(run_id, items.stored_of(found[0]))
            return items.step_from_item(found[0], stored.state)
        seq = items.stored_of(found[0]).seq
        return self._full_range(run_id, seq, seq)[0]

    def list_runs(
        self,
        graph_id: str | None = None,
        status: RunStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
        owner: str | None = None,
    ) -> Page[RunRecord]:
        """Newest first. Listed runs carry what the indexes project
        (:data:`~functions.aws.dynamodb_items.LISTED_ATTRIBUTES`): input and state are empty,
        max_steps and steps 0, node ``None`` (reading every run's header and latest step would
        multiply the cost)."""
        if graph_id is not None:
            # Runs of a graph, filtered by status and owner if asked (GSI1 holds a graph's
            # runs, which are nearly all its owner's: only they and admins can start them).
            found, next_cursor = pages.index_page(
                self._query, self.table, "GSI1", items.graph_partition(graph_id), limit, cursor,
                status=status, owner=owner,
            )  # fmt: skip
        elif owner is not None:
            # One owner's runs (GSI3), filtered by status if asked.
            found, next_cursor = pages.index_page(
                self._query, self.table, "GSI3", items.owner_partition(owner, "RUNS"), limit,
                cursor, status=status,
            )  # fmt: skip
        elif status is not None:
            found, next_cursor = pages.status_page(self._query, self.table, status, limit, cursor)
        else:
            found, next_cursor = pages.all_runs_page(self._query, self.table, limit, cursor)
        runs = [replace(items.listed_run_from_item(i), node=None) for i in found]
        return Page(runs, next_cursor)

    def count_runs(
        self, graph_id: str | None = None, owner: str | None = None, up_to: int = 10_000
    ) -> tuple[dict[str, int], bool]:
        """Counted from the listing indexes (:func:`~functions.aws.dynamodb_pages.count_runs`)."""
        return pages.count_runs(self._query, self.table, graph_id, owner, up_to)

    def commit_step(self, step: StepRecord, end: RunEnd | None = None) -> None:
        stored, since = self._lean(step)
        item = self._expiring(self._step_item(step, self._stashed(step.run_id, stored)))
        if end is None:
            self._put_new(item, StepConflict(step.run_id, step.seq))
            self._states.put(step.run_id, step.seq, step.state, since)
            return
        reasons = self._transact(
            [
                {"Put": {"TableName": self.table, "Item": item, "ConditionExpression": SLOT_FREE}},
                self._end_run(step.run_id, end, step.started_at),
            ]
        )
        if reasons is None:
            self._states.put(step.run_id, step.seq, step.state, since)
            return
        header_failed = len(reasons) > 1 and reasons[1] == CONDITION_FAILED
        if header_failed and self._get(items.run_key(step.run_id)) is None:
            raise RunNotFound(step.run_id)
        raise StepConflict(step.run_id, step.seq)

    def _lean(self, step: StepRecord) -> tuple[deltas.Stored, int]:
        """How ``step`` is kept (engine/deltas.py): a delta from the state before it, when
        that state is known (read or written by this store just before: the hop's own slot
        check) and the delta provably rebuilds the step's state; else its full state."""
        cached = self._states.get(step.run_id)
        if cached is None or cached[0] != step.seq - 1:
            return deltas.lean(step.seq, step.updates, step.state, None, -1)
        return deltas.lean(step.seq, step.updates, step.state, cached[1], cached[2])

    @staticmethod
    def _step_item(step: StepRecord, stored: deltas.Stored) -> Item:
        item = items.step_item(step, stored)
        size = items.attr_size(item.get("state") or item["delta"])
        if size > items.STATE_BUDGET:  # DynamoDB would refuse the item with a 400
            raise StateTooLargeError(size, items.STATE_BUDGET)
        return _fitting(item, "step")

    def _end_run(self, run_id: str, end: RunEnd, at: float) -> dict[str, Any]:
        """The header update of a transition (a run's end, a redrive), conditional on the run
        being in ``end.from_status``. GSI2PK moves with the status so the runs-by-status
        index follows."""
        status, error = end.status, end.error
        names = {"#status": "status", "#updated": "updated_at", "#gsi": "GSI2PK", "#error": "error"}
        values: dict[str, Any] = {
            ":status": {"S": status},
            ":updated": items.num(at),
            ":gsi": {"S": items.status_partition(status, run_id)},
            ":running": {"S": end.from_status},
        }
        expression = "SET #status = :status, #updated = :updated, #gsi = :gsi"
        if end.max_steps is not None:
            names["#limit"] = "max_steps"
            values[":limit"] = items.num(end.max_steps)
            expression += ", #limit = :limit"
        if error is None:
            expression += " REMOVE #error"
        else:
            expression += ", #error = :error"
            values[":error"] = {"S": error}
        return {
            "Update": {
                "TableName": self.table,
                "Key": items.run_key(run_id),
                "UpdateExpression": expression,
                "ConditionExpression": "#status = :running",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }

    def get_step(self, run_id: str, seq: int) -> StepRecord | None:
        """One strongly consistent range read: the step, and the steps back to its nearest
        full state unless the state before it is known (engine/deltas.py)."""
        found = self._full_range(run_id, seq, seq)
        return found[0] if found else None

    # -- lean steps (engine/deltas.py) -------------------------------------------------------
    def _full_range(self, run_id: str, first: int, last: int, limit: int | None = None
                    ) -> list[StepRecord]:  # fmt: skip
        """Steps ``first``..``last`` (at most ``limit``) with their states rebuilt: one query
        from the nearest full state (or the last state known) through ``last``."""
        lo, start = deltas.start_of(first, self._states.get(run_id))
        query: dict[str, Any] = {
            "KeyConditionExpression": "PK = :pk AND SK BETWEEN :lo AND :hi",
            "ExpressionAttributeValues": {
                ":pk": {"S": f"RUN#{run_id}"},
                ":lo": {"S": "RUN" if lo == deltas.HEADER else items.step_sk(lo)},
                ":hi": {"S": items.step_sk(last)},
            },
            "ConsistentRead": True,
        }
        if limit is not None:
            query["Limit"] = limit + (first - max(lo, 0)) + (lo == deltas.HEADER)
            found = self._call("query", TableName=self.table, **query).get("Items", [])
        else:
            found = list(self._query_all(**query))
        return self._rebuilt(run_id, found, first, start)

    def _rebuilt(self, run_id: str, found: list[Item], first: int,
                 start: tuple[int, dict[str, Any], int] | None) -> list[StepRecord]:  # fmt: skip
        """The steps from ``first`` among ``found`` (the run's header and step items, in key
        order), each with its state rebuilt (:func:`engine.deltas.rebuild`)."""
        stored: list[deltas.Stored] = []
        wanted: list[Item] = []
        for item in found:
            sk = item["SK"]["S"]
            if sk == "RUN":
                stored.append(self._restored(run_id, items.header_stored(item)))
            elif sk.startswith(items.STEP_PREFIX):
                stored.append(self._restored(run_id, items.stored_of(item)))
                if stored[-1].seq >= first:
                    wanted.append(item)
        if not wanted:
            return []
        try:
            rebuilt = deltas.rebuild(stored, start)
        except LookupError:  # its full state expired first (the TTL, ``retention_s``)
            raise NotFoundError("step", f"{first} of run {run_id} (expired)") from None
        last = stored[-1].seq
        self._states.put(run_id, last, rebuilt.states[last], rebuilt.since)
        return [
            items.step_from_item(i, rebuilt.states[int(i["SK"]["S"][len(items.STEP_PREFIX) :])],
                                 self._restored(run_id, items.stored_of(i)).delta)
            for i in wanted
        ]  # fmt: skip

    # -- tasks of a superstep of several -------------------------------------------------------
    def commit_task(self, task: TaskRecord, *, counted: bool = False) -> None:
        item = self._expiring(items.task_item(task))
        size = items.attr_size(item["updates"])
        if size > items.STATE_BUDGET:  # DynamoDB would refuse the item with a 400
            raise StateTooLargeError(size, items.STATE_BUDGET)
        if not counted:
            self._put_new(item, StepConflict(task.run_id, task.seq))
            return
        # One transaction: the count rises exactly when the slot is filled, never apart.
        ended = task.started_at + task.duration_ms / 1000  # the sweeper's sign of progress
        count = {
            "Update": {
                "TableName": self.table,
                "Key": items.task_count_key(task.run_id, task.seq),
                "UpdateExpression": "ADD done :one SET last_at = :at"
                + (", expires_at = :expires" if "expires_at" in item else ""),
                "ExpressionAttributeValues": {
                    ":one": {"N": "1"},
                    ":at": items.num(ended),
                    **({":expires": item["expires_at"]} if "expires_at" in item else {}),
                },
            }
        }
        put = {"Put": {"TableName": self.table, "Item": item, "ConditionExpression": SLOT_FREE}}
        if self._transact([put, count]) is not None:
            raise StepConflict(task.run_id, task.seq)

    def count_tasks(self, run_id: str, seq: int) -> int:
        found = self._get(items.task_count_key(run_id, seq))
        return 0 if found is None else int(found["done"]["N"])

    def get_task(self, run_id: str, seq: int, node: str, index: int | None) -> TaskRecord | None:
        item = self._get(items.task_key(run_id, seq, node, index))
        return None if item is None else items.task_from_item(item)

    def list_tasks(self, run_id: str, seq: int) -> list[TaskRecord]:
        """One query for the superstep's whole fan-in (DynamoDB pages it at 1 MB)."""
        return [items.task_from_item(i) for i in self._run_items(run_id, items.task_sk_prefix(seq))]

    # -- a wide superstep's close, page by page (engine/fold.py) -----------------------------
    def list_tasks_page(
        self, run_id: str, seq: int, after: str | None = None, limit: int = 1000
    ) -> Page[TaskRecord]:
        """One query of at most ``limit`` items (fewer when DynamoDB's 1 MB page ends first);
        the cursor is the last key's slot part, ``<index or ->#<node>``."""
        prefix = items.task_sk_prefix(seq)
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": "PK = :pk AND begins_with(SK, :tasks)",
            "ExpressionAttributeValues": {":pk": {"S": f"RUN#{run_id}"}, ":tasks": {"S": prefix}},
            "ConsistentRead": True, "Limit": max(1, limit),
        }  # fmt: skip
        if after is not None:
            kwargs["ExclusiveStartKey"] = {
                "PK": {"S": f"RUN#{run_id}"},
                "SK": {"S": prefix + after},
            }
        response = self._call("query", TableName=self.table, **kwargs)
        last = response.get("LastEvaluatedKey")
        cursor = None if last is None else last["SK"]["S"][len(prefix) :]
        return Page([items.task_from_item(i) for i in response.get("Items", [])], cursor)

    def task_progress(self, run_id: str, seq: int) -> tuple[int, float]:
        found = self._get(items.task_count_key(run_id, seq))
        if found is None:
            return 0, 0.0
        last = float(found["last_at"]["N"]) if "last_at" in found else 0.0
        return int(found["done"]["N"]), last

    def commit_fold(self, fold: FoldRecord, after: str | None) -> None:
        """One conditional PutItem; the state's and the rest's large values go to blobs first,
        as a step's do, so that a fold record stays inside an item."""
        stashed = replace(fold, state=self._stash(fold.run_id, fold.state),
                          folded=self._stash(fold.run_id, fold.folded))  # fmt: skip
        item = _fitting(items.fold_item(stashed), "fold")
        conflict = StepConflict(fold.run_id, fold.seq)
        if after is None:
            self._put_new(item, conflict)
            return
        self._call(
            "put_item", conflict=conflict, TableName=self.table, Item=item,
            ConditionExpression="#cursor = :after", ExpressionAttributeNames={"#cursor": "cursor"},
            ExpressionAttributeValues={":after": {"S": after}},
        )  # fmt: skip

    def get_fold(self, run_id: str, seq: int) -> FoldRecord | None:
        item = self._get(items.fold_key(run_id, seq))
        if item is None:
            return None
        fold = items.fold_from_item(item)
        return replace(fold, state=self._restore(run_id, fold.state),
                       folded=self._restore(run_id, fold.folded))  # fmt: skip

    # -- failed attempts of retried tasks (engine/retries.py) --------------------------------
    def commit_attempt(self, attempt: AttemptRecord) -> None:
        self._put_new(self._expiring(items.attempt_item(attempt)),
                      StepConflict(attempt.run_id, attempt.seq))  # fmt: skip

    def list_attempts(self, run_id: str, seq: int) -> list[AttemptRecord]:
        return [
            items.attempt_from_item(i)
            for i in self._run_items(run_id, items.attempt_sk_prefix(seq))
        ]

    # -- tasks that wait for input (engine/pauses.py; functions/aws/dynamodb_pauses.py) ---
    def commit_pause(self, pause: PauseRecord, *, hold: bool) -> None:
        put = pauses.put_pause(self.table, pause)
        self._expiring(put["Put"]["Item"])  # a log item as the others (RetentionDays)
        deadline = pauses.put_deadline(self.table, pause)
        if not hold and deadline is None:
            self._put_new(put["Put"]["Item"], StepConflict(pause.run_id, pause.seq))
            return
        writes = [put, *([deadline] if deadline is not None else [])]
        if hold:
            writes.append(
                pauses.move_header(self.table, pause.run_id, "paused", ("running",), pause.since)
            )
        if self._transact(writes) is not None:
            raise StepConflict(pause.run_id, pause.seq)

    def due_deadlines(self, now: float, limit: int = 100) -> list[Deadline]:
        response = self._call(
            "query", TableName=self.table,
            KeyConditionExpression="PK = :pk AND SK < :due",
            ExpressionAttributeValues={":pk": {"S": pauses.DEADLINES},
                                       ":due": {"S": pauses.due_bound(now)}},
            Limit=max(1, limit), ConsistentRead=True,
        )  # fmt: skip
        return [pauses.deadline_from_item(i) for i in response.get("Items", [])]

    def forget_deadline(self, deadline: Deadline) -> None:
        self._call("delete_item", TableName=self.table, Key=pauses.deadline_key(deadline))

    def list_pauses(self, run_id: str, seq: int) -> list[PauseRecord]:
        return [
            pauses.pause_from_item(i) for i in self._run_items(run_id, pauses.pause_sk_prefix(seq))
        ]

    def answer_pause(self, pause: PauseRecord) -> None:
        at = pause.answered_at or 0.0
        move = pauses.move_header(self.table, pause.run_id, "running", ("paused", "running"), at)
        if self._transact([pauses.answer(self.table, pause), move]) is not None:
            raise StepConflict(pause.run_id, pause.seq)

    def hold_run(self, run_id: str, pending: list[PauseRecord], at: float) -> bool:
        checks = [pauses.still_pending(self.table, p) for p in pending[: MAX_TRANSACTION - 1]]
        move = pauses.move_header(self.table, run_id, "paused", ("running",), at)
        return self._transact([move, *checks]) is None

    def list_steps(
        self, run_id: str, after: int = -1, limit: int = 100, *, states: bool = True
    ) -> Page[StepRecord]:
        """The cursor is the seq of the last step returned (pass it as ``after``). It is set
        whenever DynamoDB stopped at the limit, so the last page may be empty: reading one
        step more to know could cost a whole 350 KB state."""
        first = max(0, after + 1)
        if not states:
            return self._listed_steps(run_id, first, limit)
        lo, start = deltas.start_of(first, self._states.get(run_id))
        response = self._call(
            "query",
            TableName=self.table,
            KeyConditionExpression="PK = :pk AND SK BETWEEN :first AND :last",
            ExpressionAttributeValues={
                ":pk": {"S": f"RUN#{run_id}"},
                ":first": {"S": "RUN" if lo == deltas.HEADER else items.step_sk(lo)},
                ":last": {"S": LAST_STEP_SK},
            },
            # the steps before ``first`` rebuild its state (engine/deltas.py)
            Limit=max(1, limit) + (first - max(lo, 0)) + (lo == deltas.HEADER),
            ConsistentRead=True,
        )
        found = response.get("Items", [])
        steps = self._rebuilt(run_id, found, first, start)
        header = any(i["SK"]["S"] == "RUN" for i in found)
        if not steps and not header and self._get(items.run_key(run_id)) is None:
            raise RunNotFound(run_id)
        more = "LastEvaluatedKey" in response and steps
        return Page(steps, str(steps[-1].seq) if more else None)

    def _listed_steps(self, run_id: str, first: int, limit: int) -> Page[StepRecord]:
        """Steps from ``first`` as a history listing shows them (no state, no updates): the
        page's own items only, projected (:data:`~functions.aws.dynamodb_items.LISTED_STEP`).
        Neither the steps back to the nearest snapshot nor any large value in S3 is read,
        nor any state rebuilt. (The read units are the same per item read: DynamoDB bills a
        Query by the size of the items it reads, whatever it returns.)"""
        response = self._call(
            "query",
            TableName=self.table,
            KeyConditionExpression="PK = :pk AND SK BETWEEN :first AND :last",
            ExpressionAttributeValues={
                ":pk": {"S": f"RUN#{run_id}"},
                ":first": {"S": items.step_sk(first)},
                ":last": {"S": LAST_STEP_SK},
            },
            ProjectionExpression=items.LISTED_STEP_PROJECTION,
            ExpressionAttributeNames=items.LISTED_STEP_NAMES,
            Limit=max(1, limit),
            ConsistentRead=True,
        )
        steps = [items.listed_step_from_item(i) for i in response.get("Items", [])]
        if not steps and self._get(items.run_key(run_id)) is None:
            raise RunNotFound(run_id)
        more = "LastEvaluatedKey" in response and steps
        return Page(steps, str(steps[-1].seq) if more else None)

    # -- connections -----------------------------------------------------------------------
    def save_connection(self, connection: Connection) -> None:
        self._call("put_item", TableName=self.table, Item=items.connection_item(connection))

    def get_connection(self, connection_id: str) -> Connection:
        item = self._get(items.connection_key(connection_id))
        if item is None:
            raise NotFoundError("connection", connection_id)
        return items.connection_from_item(item)

    def delete_connection(self, connection_id: str) -> None:
        deletes: list[dict[str, Any]] = []
        for item in self._query_all(
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": {"S": f"CONN#{connection_id}"}},
            ProjectionExpression="PK, SK",
            ConsistentRead=True,
        ):
            deletes.append({"DeleteRequest": {"Key": {"PK": item["PK"], "SK": item["SK"]}}})
            sk = item["SK"]["S"]
            if sk.startswith(items.SUB_PREFIX):
                by_run, _ = items.subscription_keys(connection_id, sk[len(items.SUB_PREFIX) :])
                deletes.append({"DeleteRequest": {"Key": by_run}})
        self._batch_write(deletes)

    def subscribe(self, connection_id: str, run_id: str) -> None:
        """Raises NotFoundError("connection", ...) for a connection never saved (or gone)."""
        item = self._get(items.connection_key(connection_id))
        if item is None:
            raise NotFoundError("connection", connection_id)
        by_run, by_connection = items.subscription_items(items.connection_from_item(item), run_id)
        self._batch_write(
            [{"PutRequest": {"Item": by_run}}, {"PutRequest": {"Item": by_connection}}]
        )

    def unsubscribe(self, connection_id: str, run_id: str) -> None:
        keys = items.subscription_keys(connection_id, run_id)
        self._batch_write([{"DeleteRequest": {"Key": key}} for key in keys])

    def record_replay(self, connection_id: str, run_id: str, through: int) -> None:
        by_run, _ = items.subscription_keys(connection_id, run_id)
        try:
            self._call(
                "update_item",
                conflict=_SlotTaken(),
                TableName=self.table,
                Key=by_run,
                UpdateExpression="SET replayed_through = :through",
                ConditionExpression="attribute_exists(PK)",  # never revive an unsubscribe
                ExpressionAttributeValues={":through": items.num(through)},
            )
        except _SlotTaken:
            return

    def read_slot(self, run_id: str, seq: int) -> Slot:
        """One strongly consistent Query of the run's partition, from the slot's origin (the
        header, SK ``RUN``, for superstep 0; after it, the step items from which the state
        after ``STEP#seq-1`` is rebuilt: its nearest full state, or the step after the last
        state this store knows, engine/deltas.py) to its last subscription: the sort keys
        between are later steps (none while the run is at this slot) and the subscriptions
        (``RUN`` < ``STEP#...`` < ``SUB#...`` < ``TASK#...``). Later pages are read only
        while they can hold subscribers: a later step means the slot is taken, and its commit
        will fail whoever is listening."""
        lo, start = deltas.start_of(seq - 1, self._states.get(run_id)) if seq else (0, None)
        origin = "RUN" if seq == 0 or lo == deltas.HEADER else items.step_sk(lo)
        query: dict[str, Any] = {
            "ConsistentRead": True,
            "Limit": SLOT_PAGE + max(0, seq - 1 - lo),
            "KeyConditionExpression": "PK = :pk AND SK BETWEEN :origin AND :subs_end",
            "ExpressionAttributeValues": {
                ":pk": {"S": f"RUN#{run_id}"},
                ":origin": {"S": origin},
                ":subs_end": {"S": "SUB$"},  # after every "SUB#..." ("$" follows "#")
            },
        }
        found: list[Item] = []
        while True:
            response = self._call("query", TableName=self.table, **query)
            page = response.get("Items", [])
            found += page
            moved_on = any(_step_seq(i) >= seq for i in page)
            if moved_on or "LastEvaluatedKey" not in response:
                return self._slot(run_id, seq, found, start, moved_on)
            query["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _slot(self, run_id: str, seq: int, found: list[Item],
              start: tuple[int, dict[str, Any], int] | None, moved_on: bool) -> Slot:  # fmt: skip
        run: RunRecord | None = None
        origin: list[Item] = []
        subscribers: list[Connection] = []
        now = self._clock()
        for item in found:
            sk = item["SK"]["S"]
            if sk == "RUN":
                origin.append(item)
                run = self._header(item) if seq == 0 else None
            elif sk.startswith(items.SUB_PREFIX):
                if int(item["expires_at"]["N"]) > now:
                    subscribers.append(items.subscriber_from_item(item))
            elif _step_seq(item) < seq:
                origin.append(item)
        previous = None
        if seq:
            steps = self._rebuilt(run_id, origin, seq - 1, start)
            previous = steps[0] if steps else None
        elif run is not None:
            self._states.put(run_id, deltas.HEADER, run.input, 0)
        return Slot(run, previous, tuple(subscribers), taken=moved_on)

    def subscribers(self, run_id: str) -> list[Connection]:
        """One query of the run's subscription items, which carry the endpoint. Strongly
        consistent: the notifier reads this after a step's commit, and a subscriber replays
        the log after writing its subscription; an eventually consistent read could miss a
        subscription written just before the commit, and that step would reach its client
        neither live nor by replay (functions/aws/notifier.py)."""
        found = self._query_all(
            ConsistentRead=True,
            KeyConditionExpression="PK = :pk AND begins_with(SK, :sub)",
            FilterExpression="expires_at > :now",
            ExpressionAttributeValues={
                ":pk": {"S": f"RUN#{run_id}"},
                ":sub": {"S": items.SUB_PREFIX},
                ":now": items.num(int(self._clock())),
            },
        )
        return [items.subscriber_from_item(item) for item in found]
