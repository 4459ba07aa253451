"""The local stack's moto process writes every DynamoDB write down before answering it
(infra/moto/persistence.py), so that ``kill -9`` never undoes a step anyone saw committed.

A kill is played here by leaving moto without its last flush: the flush timer is held off,
and the journal is closed as the process's death would close it. What comes back is then
exactly what was written down while the writes were answered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.moto import persistence as persistence_module
from infra.moto.persistence import Persistence
from tests.functional.test_moto_local import TABLE, clients, item, moto_as_in_the_stack


@pytest.fixture(autouse=True)
def no_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The once-a-second flush never comes: only what the writes wrote is on disk."""
    monkeypatch.setattr(persistence_module, "FLUSH_INTERVAL_S", 3600.0)


def killed(persistence: Persistence) -> None:
    """The process dies: no last flush; the open files close with it."""
    persistence._stop.set()
    persistence.journal.close()


def frames(folder: Path) -> list[dict[str, Any]]:
    lines: list[str] = []
    for path in sorted(folder.glob("changes-*.jsonl")):
        lines += path.read_text().splitlines()
    return [json.loads(line) for line in lines]


def step_key(seq: int) -> dict[str, Any]:
    return {"PK": {"S": "RUN#r1"}, "SK": {"S": f"STEP#{seq:06d}"}}


def test_a_commit_answered_before_a_kill_is_back_with_the_queue_as_it_was(
    tmp_path: Path,
) -> None:
    # Given a stack whose worker took a hop and committed its step, then sent the next hop
    # and deleted its own, and was killed before any flush
    with moto_as_in_the_stack(tmp_path) as persistence:
        dynamodb, sqs, url = clients()
        persistence.restore()
        sqs.send_message(QueueUrl=url, MessageBody="hop 0")
        (hop,) = sqs.receive_message(QueueUrl=url, VisibilityTimeout=600)["Messages"]
        dynamodb.put_item(TableName=TABLE, Item={**step_key(0), "by": {"S": hop["MessageId"]}})
        sqs.send_message(QueueUrl=url, MessageBody="hop 1")
        sqs.delete_message(QueueUrl=url, ReceiptHandle=hop["ReceiptHandle"])
        killed(persistence)

    # When the stack starts again on its data folder
    with moto_as_in_the_stack(tmp_path) as persistence:
        dynamodb, sqs, url = clients()
        persistence.restore()

        # Then the step is there, as committed
        got = dynamodb.get_item(TableName=TABLE, Key=step_key(0))
        assert got["Item"]["by"] == {"S": hop["MessageId"]}
        # And the queue is as it was at that commit: the hop in flight comes back, with its
        # id (its redelivery finds its own commit and sends the next hop again), and the
        # send that came after the commit is undone
        messages: list[dict[str, Any]] = []
        for _ in range(10):
            messages = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
            if messages:
                break
        assert [(m["MessageId"], m["Body"]) for m in messages] == [(hop["MessageId"], "hop 0")]
        persistence.stop()


def test_a_transaction_is_written_down_whole_in_one_frame(tmp_path: Path) -> None:
    # Given a stack with a run
    with moto_as_in_the_stack(tmp_path) as persistence:
        dynamodb, _, _ = clients()
        persistence.restore()
        dynamodb.put_item(TableName=TABLE, Item=item("RUN#r1", "RUN", steps="0"))
        before = len(frames(tmp_path))

        # When a transaction commits a step and updates the run
        dynamodb.transact_write_items(TransactItems=[
            {"Put": {"TableName": TABLE, "Item": {**step_key(0), "v": {"S": "1"}}}},
            {"Update": {"TableName": TABLE, "Key": {"PK": {"S": "RUN#r1"}, "SK": {"S": "RUN"}},
                        "UpdateExpression": "SET steps = :n",
                        "ExpressionAttributeValues": {":n": {"S": "1"}}}},
        ])  # fmt: skip

        # Then one frame holds both writes, before the call returned
        (frame,) = frames(tmp_path)[before:]
        written = {json.loads(row[3])["SK"]["S"]: row[4] for row in frame["items"]}
        assert set(written) == {"STEP#000000", "RUN"}
        assert written["RUN"]["steps"] == {"S": "1"}
        killed(persistence)


def test_a_cancelled_transaction_leaves_the_items_on_disk_as_they_were(tmp_path: Path) -> None:
    # Given a run on disk
    with moto_as_in_the_stack(tmp_path) as persistence:
        dynamodb, _, _ = clients()
        persistence.restore()
        dynamodb.put_item(TableName=TABLE, Item=item("RUN#r1", "RUN", steps="0"))
        # When a transaction that would commit a step fails its condition on the run
        with pytest.raises(dynamodb.exceptions.TransactionCanceledException):
            dynamodb.transact_write_items(TransactItems=[
                {"Put": {"TableName": TABLE, "Item": {**step_key(0), "v": {"S": "1"}}}},
                {"ConditionCheck": {"TableName": TABLE,
                                    "Key": {"PK": {"S": "RUN#r1"}, "SK": {"S": "RUN"}},
                                    "ConditionExpression": "attribute_not_exists(PK)"}},
            ])  # fmt: skip
        killed(persistence)

    # Then after a kill and a restart the step is not there and the run is as it was
    with moto_as_in_the_stack(tmp_path) as persistence:
        dynamodb, _, _ = clients()
        persistence.restore()
        items = dynamodb.scan(TableName=TABLE)["Items"]
        assert [(i["SK"]["S"], i["steps"]["S"]) for i in items] == [("RUN", "0")]
        persistence.stop()
