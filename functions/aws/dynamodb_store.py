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

The store is one class built of parts, each on the table's I/O
(:class:`~functions.aws.dynamodb_table.TableIO`: calls, transactions, paging, large values
in S3, TTL): steps kept lean and read back (:mod:`~functions.aws.dynamodb_steps`), pauses
and deadlines (:mod:`~functions.aws.dynamodb_pauses`), a wide close's pages and folds
(:mod:`~functions.aws.dynamodb_folds`) and WebSocket connections
(:mod:`~functions.aws.dynamodb_connections`). This module holds graphs, runs and their
transitions, tasks and attempts, and the slot check's read.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from engine import deltas
from engine.errors import (
    ConflictError,
    GraphNotFound,
    RunNotFound,
    StateTooLargeError,
    StepConflict,
)
from engine.ports import (
    AttemptRecord,
    Connection,
    GraphRecord,
    Page,
    RunEnd,
    RunRecord,
    RunStatus,
    Slot,
    StepRecord,
    TaskRecord,
)
from functions.aws import dynamodb_items as items
from functions.aws import dynamodb_pages as pages
from functions.aws.dynamodb_connections import DynamoConnections
from functions.aws.dynamodb_folds import DynamoFolds
from functions.aws.dynamodb_items import Item
from functions.aws.dynamodb_pauses import DynamoPauses
from functions.aws.dynamodb_steps import DynamoSteps
from functions.aws.dynamodb_table import SLOT_FREE, SlotTaken, fitting
from functions.aws.errors import CONDITION_FAILED

HEADER_BLOB_ABOVE = 4 * 1024
"""A run's input value larger than this (bytes of JSON) is kept as a blob when the store has
a bucket: the header is rewritten at the run's end (a transaction: twice its size in write
units) and copied into three indexes, so a 50 KB input would cost ~200 write units a run;
a blob costs one S3 PUT (once) and a GET on each cold read of the input."""
SLOT_PAGE = 16
"""Items per page of a slot read: the origin and a few subscribers in one page, and a stray
hop of a long run reads no more than this of its later steps."""


def _step_seq(item: Item) -> int:
    """The seq of a step item; -1 for any other item."""
    sk = item["SK"]["S"]
    return int(sk[len(items.STEP_PREFIX) :]) if sk.startswith(items.STEP_PREFIX) else -1


class DynamoRunStore(DynamoSteps, DynamoPauses, DynamoFolds, DynamoConnections):
    """A :class:`~engine.ports.RunStore` on one DynamoDB table (see template.yaml).

    ``client`` is a low-level boto3 DynamoDB client; ``clock`` decides which connections
    have expired (DynamoDB's TTL deletes items only eventually, up to days later).
    """

    # -- graphs ----------------------------------------------------------------------------
    def put_graph(self, graph: GraphRecord) -> None:
        self._put_new(
            fitting(items.graph_item(graph), "graph"),
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
        header = fitting(items.run_item(stashed), "run")
        if first is not None:
            return self._create_with_first(run, header, first)
        try:
            self._put_new(header, SlotTaken())
        except SlotTaken:
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

    def get_run_header(self, run_id: str) -> RunRecord:
        """One strongly consistent GetItem of the header item alone. With a bucket the
        header weighs a few KB at most (a larger input is a blob, and is not fetched)."""
        item = self._get(items.run_key(run_id))
        if item is None:
            raise RunNotFound(run_id)
        return replace(items.run_from_item(item), input={}, state={}, node=None, steps=0)

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

    # -- failed attempts of retried tasks (engine/retries.py) --------------------------------
    def commit_attempt(self, attempt: AttemptRecord) -> None:
        self._put_new(self._expiring(items.attempt_item(attempt)),
                      StepConflict(attempt.run_id, attempt.seq))  # fmt: skip

    def list_attempts(self, run_id: str, seq: int) -> list[AttemptRecord]:
        return [
            items.attempt_from_item(i)
            for i in self._run_items(run_id, items.attempt_sk_prefix(seq))
        ]

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
