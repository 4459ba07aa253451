"""Pause items of the single-table store (engine/pauses.py), the header moves that go with
them in one transaction, and the store's pause methods (:class:`DynamoPauses`)::

    pause   PK=RUN#<id>  SK=PAUSE#000042#<kind>#<index or ->#<node>   doc (the question and
            what the task held), since, until?, answered_at?, answer? (JSON), timed_out?,
            committed_by? (who wrote it, then who answered it)

A pause with a deadline writes, in the same write, a deadline entry the sweeper finds with one
query when no hop can hold it (``Dispatch=lambda``)::

    deadline  PK=DEADLINES  SK=<until, 17 chars>#<run id>#<seq>#<kind>#<task>  run_id, seq,
              task, kind, until

``PAUSE#`` sorts before ``RUN`` and ``STEP#``, outside every range the slot check and the
log read. A pause is written once (conditional on its slot being empty) and answered once
(conditional on ``answered_at`` being absent); a run moves ``running <-> paused`` only in
the same transaction as the pause item that explains it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from engine.errors import StepConflict
from engine.ports import Deadline, PauseRecord
from functions.aws import dynamodb_items as items
from functions.aws.dynamodb_table import MAX_TRANSACTION, TableIO

PAUSE_PREFIX = "PAUSE#"
Item = dict[str, Any]


def pause_sk_prefix(seq: int) -> str:
    return f"{PAUSE_PREFIX}{seq:06d}#"


def pause_key(pause: PauseRecord) -> Item:
    # A node id is any string, so it goes last (as in a task's key).
    slot = "-" if pause.index is None else f"{pause.index:06d}"
    sk = f"{pause_sk_prefix(pause.seq)}{pause.kind}#{slot}#{pause.node}"
    return {"PK": {"S": f"RUN#{pause.run_id}"}, "SK": {"S": sk}}


def pause_item(pause: PauseRecord) -> Item:
    """A new, pending pause."""
    doc = {
        "node": pause.node, "index": pause.index, "kind": pause.kind, "prompt": pause.prompt,
        "key": pause.key, "schema": pause.schema, "on_timeout": pause.on_timeout,
        "held": pause.held,
    }  # fmt: skip
    item: Item = {**pause_key(pause), "doc": items.json_attr(doc), "since": items.num(pause.since)}
    if pause.until is not None:
        item["until"] = items.num(pause.until)
    if pause.committed_by:
        item["committed_by"] = {"S": pause.committed_by}
    return item


def pause_from_item(item: Item) -> PauseRecord:
    doc = items.json_value(item["doc"])
    pause = PauseRecord(
        run_id=item["PK"]["S"][len("RUN#") :],
        seq=int(item["SK"]["S"][len(PAUSE_PREFIX) :].split("#", 1)[0]),
        node=doc["node"], index=doc["index"], kind=doc["kind"],
        since=float(item["since"]["N"]), prompt=doc["prompt"], key=doc["key"],
        schema=doc["schema"], on_timeout=doc["on_timeout"], held=doc["held"],
        until=float(item["until"]["N"]) if "until" in item else None,
        committed_by=item["committed_by"]["S"] if "committed_by" in item else "",
    )  # fmt: skip
    if "answered_at" not in item:
        return pause
    return replace(
        pause, answered_at=float(item["answered_at"]["N"]),
        value=items.json_value(item["answer"]), timed_out="timed_out" in item,
        committed_by=item["committed_by"]["S"] if "committed_by" in item else "",
    )  # fmt: skip


def put_pause(table: str, pause: PauseRecord) -> dict[str, Any]:
    return {"Put": {"TableName": table, "Item": pause_item(pause),
                    "ConditionExpression": "attribute_not_exists(PK)"}}  # fmt: skip


def answer(table: str, pause: PauseRecord) -> dict[str, Any]:
    """The answer of a pending pause (``answered_at`` absent: it was pending)."""
    expression = "SET answered_at = :at, answer = :answer, committed_by = :by"
    values: dict[str, Any] = {
        ":at": items.num(pause.answered_at or 0.0),
        ":answer": items.json_attr(pause.value),
        ":by": {"S": pause.committed_by or "-"},
    }
    if pause.timed_out:
        expression += ", timed_out = :yes"
        values[":yes"] = {"BOOL": True}
    return {"Update": {
        "TableName": table, "Key": pause_key(pause), "UpdateExpression": expression,
        "ConditionExpression": "attribute_exists(PK) AND attribute_not_exists(answered_at)",
        "ExpressionAttributeValues": values,
    }}  # fmt: skip


def still_pending(table: str, pause: PauseRecord) -> dict[str, Any]:
    return {"ConditionCheck": {
        "TableName": table, "Key": pause_key(pause),
        "ConditionExpression": "attribute_exists(PK) AND attribute_not_exists(answered_at)",
    }}  # fmt: skip


def move_header(
    table: str, run_id: str, to: str, from_statuses: tuple[str, ...], at: float
) -> dict[str, Any]:
    """The header's status moved to ``to`` if it is one of ``from_statuses`` (its status
    index key moves with it)."""
    values: dict[str, Any] = {
        ":to": {"S": to}, ":at": items.num(at),
        ":gsi": {"S": items.status_partition(to, run_id)},
    }  # fmt: skip
    allowed = []
    for i, status in enumerate(from_statuses):
        values[f":from{i}"] = {"S": status}
        allowed.append(f":from{i}")
    return {"Update": {
        "TableName": table, "Key": items.run_key(run_id),
        "UpdateExpression": "SET #status = :to, updated_at = :at, GSI2PK = :gsi",
        "ConditionExpression": f"#status IN ({', '.join(allowed)})",
        "ExpressionAttributeNames": {"#status": "status"},
        "ExpressionAttributeValues": values,
    }}  # fmt: skip


DEADLINES = "DEADLINES"


def deadline_key(deadline: Deadline) -> Item:
    sk = (f"{deadline.until:017.3f}#{deadline.run_id}#{deadline.seq}#{deadline.kind}"
          f"#{deadline.task}")  # fmt: skip
    return {"PK": {"S": DEADLINES}, "SK": {"S": sk}}


def put_deadline(table: str, pause: PauseRecord) -> dict[str, Any] | None:
    """The deadline entry of a pause with an ``until`` (``None`` for one without)."""
    if pause.until is None:
        return None
    deadline = Deadline(pause.run_id, pause.seq, pause.task, pause.kind, pause.until)
    item = {
        **deadline_key(deadline), "run_id": {"S": deadline.run_id},
        "seq": items.num(deadline.seq), "task": {"S": deadline.task},
        "kind": {"S": deadline.kind}, "until": items.num(deadline.until),
    }  # fmt: skip
    return {"Put": {"TableName": table, "Item": item}}


def deadline_from_item(item: Item) -> Deadline:
    return Deadline(item["run_id"]["S"], int(item["seq"]["N"]), item["task"]["S"],
                    item["kind"]["S"], float(item["until"]["N"]))  # fmt: skip


def due_bound(now: float) -> str:
    """The sort key every deadline due by ``now`` sorts before."""
    return f"{now:017.3f}#\uffff"


class DynamoPauses(TableIO):
    """The store's pauses and deadlines: each pause written with the header move and the
    deadline that go with it, in one transaction when there are several."""

    def commit_pause(self, pause: PauseRecord, *, hold: bool) -> None:
        put = put_pause(self.table, pause)
        self._expiring(put["Put"]["Item"])  # a log item as the others (RetentionDays)
        deadline = put_deadline(self.table, pause)
        if not hold and deadline is None:
            self._put_new(put["Put"]["Item"], StepConflict(pause.run_id, pause.seq))
            return
        writes = [put, *([deadline] if deadline is not None else [])]
        if hold:
            writes.append(
                move_header(self.table, pause.run_id, "paused", ("running",), pause.since)
            )
        if self._transact(writes) is not None:
            raise StepConflict(pause.run_id, pause.seq)

    def due_deadlines(self, now: float, limit: int = 100) -> list[Deadline]:
        response = self._call(
            "query", TableName=self.table,
            KeyConditionExpression="PK = :pk AND SK < :due",
            ExpressionAttributeValues={":pk": {"S": DEADLINES},
                                       ":due": {"S": due_bound(now)}},
            Limit=max(1, limit), ConsistentRead=True,
        )  # fmt: skip
        return [deadline_from_item(i) for i in response.get("Items", [])]

    def forget_deadline(self, deadline: Deadline) -> None:
        self._call("delete_item", TableName=self.table, Key=deadline_key(deadline))

    def list_pauses(self, run_id: str, seq: int) -> list[PauseRecord]:
        return [pause_from_item(i) for i in self._run_items(run_id, pause_sk_prefix(seq))]

    def answer_pause(self, pause: PauseRecord) -> None:
        at = pause.answered_at or 0.0
        move = move_header(self.table, pause.run_id, "running", ("paused", "running"), at)
        if self._transact([answer(self.table, pause), move]) is not None:
            raise StepConflict(pause.run_id, pause.seq)

    def hold_run(self, run_id: str, pending: list[PauseRecord], at: float) -> bool:
        checks = [still_pending(self.table, p) for p in pending[: MAX_TRANSACTION - 1]]
        move = move_header(self.table, run_id, "paused", ("running",), at)
        return self._transact([move, *checks]) is None
