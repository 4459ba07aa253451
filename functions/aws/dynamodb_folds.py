"""A wide superstep's close in the DynamoDB store, page by page (engine/fold.py): its tasks
read a page at a time, its progress counted, and its fold records (the close's running
merge), each written once per cursor.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from engine.errors import StepConflict
from engine.ports import FoldRecord, Page, TaskRecord
from functions.aws import dynamodb_items as items
from functions.aws.dynamodb_table import TableIO, fitting


class DynamoFolds(TableIO):
    """The reads and writes of a wide superstep's close."""

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
        item = fitting(items.fold_item(stashed), "fold")
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
