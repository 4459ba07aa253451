"""How the DynamoDB store keeps a run's steps and reads them back: each step item holds its
full state or a delta from the step before (engine/deltas.py), and a read rebuilds states
from the nearest full one (or from the last state this store knows) with one range query.
"""

from __future__ import annotations

from typing import Any

from engine import deltas
from engine.errors import NotFoundError, RunNotFound, StateTooLargeError
from engine.ports import Page, StepRecord
from functions.aws import dynamodb_items as items
from functions.aws.dynamodb_items import Item
from functions.aws.dynamodb_table import TableIO, fitting

LAST_STEP_SK = items.step_sk(999_999)


class DynamoSteps(TableIO):
    """Step items written lean and read back whole (the execution log)."""

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
        return fitting(item, "step")

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
        response = self._steps_from(
            run_id,
            "RUN" if lo == deltas.HEADER else items.step_sk(lo),
            # the steps before ``first`` rebuild its state (engine/deltas.py)
            max(1, limit) + (first - max(lo, 0)) + (lo == deltas.HEADER),
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
        response = self._steps_from(
            run_id, items.step_sk(first), max(1, limit),
            ProjectionExpression=items.LISTED_STEP_PROJECTION,
            ExpressionAttributeNames=items.LISTED_STEP_NAMES,
        )  # fmt: skip
        steps = [items.listed_step_from_item(i) for i in response.get("Items", [])]
        if not steps and self._get(items.run_key(run_id)) is None:
            raise RunNotFound(run_id)
        more = "LastEvaluatedKey" in response and steps
        return Page(steps, str(steps[-1].seq) if more else None)

    def _steps_from(self, run_id: str, first: str, limit: int, **extra: Any) -> dict[str, Any]:
        """One strongly consistent Query of at most ``limit`` of the run's items from sort
        key ``first`` through its last step."""
        return self._call(
            "query",
            TableName=self.table,
            KeyConditionExpression="PK = :pk AND SK BETWEEN :first AND :last",
            ExpressionAttributeValues={
                ":pk": {"S": f"RUN#{run_id}"},
                ":first": {"S": first},
                ":last": {"S": LAST_STEP_SK},
            },
            Limit=limit,
            ConsistentRead=True,
            **extra,
        )
