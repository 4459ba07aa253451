"""The local stack's moto process, in this process: its persistence (infra/moto_persistence.py)
brings back items and messages as they were, and its transactions (infra/moto_speedups.py)
roll back only what they wrote. moto stands in for DynamoDB and SQS, as in the stack."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from infra.moto_fidelity import serialize_dynamodb_writes, serialize_sqs
from infra.moto_persistence import Journal, Persistence
from infra.moto_speedups import (
    faster_moto,
    faster_moto_server,
    transactions_undo_their_own_writes,
)

TABLE = "t"
REGION = "us-east-1"


@contextlib.contextmanager
def moto_as_in_the_stack(folder: Path) -> Iterator[Persistence]:
    """moto patched as infra/moto_process.py patches it, with a journal in ``folder``."""
    lock = threading.RLock()
    journal = Journal(folder)
    journal.lock()
    persistence = Persistence(
        journal, lock, redelivery_s=2.0, forget=lambda pk: pk.startswith("CONN#")
    )
    with contextlib.ExitStack() as patches:
        patches.enter_context(mock_aws())
        patches.enter_context(faster_moto())
        patches.enter_context(transactions_undo_their_own_writes())
        patches.enter_context(persistence.tracking())
        patches.enter_context(serialize_dynamodb_writes(lock))
        patches.enter_context(serialize_sqs(lock))
        yield persistence


def clients() -> tuple[Any, Any, str]:
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"},
                   {"AttributeName": "SK", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"},
                              {"AttributeName": "SK", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )  # fmt: skip
    sqs = boto3.client("sqs", region_name=REGION)
    return dynamodb, sqs, sqs.create_queue(QueueName="q")["QueueUrl"]


def item(pk: str, sk: str = "X", **values: str) -> dict[str, Any]:
    return {"PK": {"S": pk}, "SK": {"S": sk}, **{k: {"S": v} for k, v in values.items()}}


def test_items_and_messages_come_back_as_they_were(tmp_path: Path) -> None:
    # Given items, a connection, a delayed message and a message in flight, written down
    with moto_as_in_the_stack(tmp_path) as persistence:
        dynamodb, sqs, url = clients()
        persistence.restore()
        dynamodb.put_item(TableName=TABLE, Item=item("RUN#r1", "RUN", status="running"))
        dynamodb.put_item(TableName=TABLE, Item=item("CONN#c1", "CONN"))
        delayed = sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=60)
        sqs.send_message(QueueUrl=url, MessageBody="hop")
        (received,) = sqs.receive_message(QueueUrl=url, VisibilityTimeout=600)["Messages"]
        persistence.flush()
        persistence.stop()

    # When moto starts empty and the journal is restored
    with moto_as_in_the_stack(tmp_path) as persistence:
        dynamodb, sqs, url = clients()
        restored = persistence.restore()

        # Then the run is back and the connection is not (it died with the gateway)
        assert restored == {"items": 1, "messages": 2, "skipped": 1}
        got = dynamodb.get_item(TableName=TABLE, Key={"PK": {"S": "RUN#r1"}, "SK": {"S": "RUN"}})
        assert got["Item"]["status"] == {"S": "running"}

        # And the message in flight comes back within the redelivery time, same id, counted
        deadline = time.monotonic() + 5
        messages: list[dict[str, Any]] = []
        while not messages and time.monotonic() < deadline:
            messages = sqs.receive_message(
                QueueUrl=url, AttributeNames=["All"], WaitTimeSeconds=1
            ).get("Messages", [])
        assert [m["MessageId"] for m in messages] == [received["MessageId"]]
        assert messages[0]["Attributes"]["ApproximateReceiveCount"] == "2"

        # And the delayed message is still delayed, with its id
        counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert counts["ApproximateNumberOfMessagesDelayed"] == "1"
        state = persistence.journal.load()
        ids = {m["id"] for queue in state.queues.values() for m in queue}
        assert delayed["MessageId"] in ids
        persistence.stop()


def test_a_cancelled_transaction_puts_back_only_what_it_changed(tmp_path: Path) -> None:
    with moto_as_in_the_stack(tmp_path):
        dynamodb, _, _ = clients()
        dynamodb.put_item(TableName=TABLE, Item=item("A", v="1"))
        dynamodb.put_item(TableName=TABLE, Item=item("B", v="1"))

        # When a transaction puts a new item, updates A, and fails its condition on B
        with pytest.raises(ClientError) as cancelled:
            dynamodb.transact_write_items(TransactItems=[
                {"Put": {"TableName": TABLE, "Item": item("NEW", v="1")}},
                {"Update": {"TableName": TABLE, "Key": {"PK": {"S": "A"}, "SK": {"S": "X"}},
                            "UpdateExpression": "SET v = :v",
                            "ExpressionAttributeValues": {":v": {"S": "2"}}}},
                {"ConditionCheck": {"TableName": TABLE,
                                    "Key": {"PK": {"S": "B"}, "SK": {"S": "X"}},
                                    "ConditionExpression": "attribute_not_exists(PK)"}},
            ])  # fmt: skip

        # Then nothing it wrote remains, and every other item is as it was
        assert cancelled.value.response["Error"]["Code"] == "TransactionCanceledException"
        items = dynamodb.scan(TableName=TABLE)["Items"]
        assert sorted((i["PK"]["S"], i["v"]["S"]) for i in items) == [("A", "1"), ("B", "1")]

        # And a transaction that passes writes everything
        dynamodb.transact_write_items(TransactItems=[
            {"Put": {"TableName": TABLE, "Item": item("NEW", v="1")}},
            {"Delete": {"TableName": TABLE, "Key": {"PK": {"S": "B"}, "SK": {"S": "X"}}}},
        ])  # fmt: skip
        items = dynamodb.scan(TableName=TABLE)["Items"]
        assert sorted(i["PK"]["S"] for i in items) == ["A", "NEW"]


EVERY_KIND = {
    "PK": {"S": "kinds"}, "SK": {"S": "X"},
    "s": {"S": "text é"}, "n": {"N": "-12.5"}, "yes": {"BOOL": True}, "none": {"NULL": True},
    "b": {"B": b"\x00\xffbytes"}, "ss": {"SS": ["a", "b"]}, "ns": {"NS": ["1", "2"]},
    "bs": {"BS": [b"x", b"y"]}, "l": {"L": [{"S": "a"}, {"N": "1"}, {"M": {"k": {"B": b"z"}}}]},
    "m": {"M": {"inner": {"L": [{"BOOL": False}, {"SS": ["c"]}]}, "e": {"M": {}}}},
}  # fmt: skip


def raw_responses(dynamodb: Any) -> list[bytes]:
    """The JSON moto answers GetItem, Query and Scan of ``EVERY_KIND`` with, byte for byte."""
    bodies: list[bytes] = []
    dynamodb.meta.events.register(
        "before-parse.dynamodb.*", lambda response_dict, **_: bodies.append(response_dict["body"])
    )
    key = {"PK": EVERY_KIND["PK"], "SK": EVERY_KIND["SK"]}
    dynamodb.get_item(TableName=TABLE, Key=key)
    dynamodb.query(
        TableName=TABLE, KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": EVERY_KIND["PK"]},
    )  # fmt: skip
    dynamodb.scan(TableName=TABLE)
    return bodies


def test_attribute_values_are_serialized_as_moto_serializes_them() -> None:
    # Given an item with an attribute of every kind, read through moto as it comes
    with mock_aws():
        dynamodb, _, _ = clients()
        dynamodb.put_item(TableName=TABLE, Item=EVERY_KIND)
        expected = raw_responses(dynamodb)

        # When the same reads go through the faster serialization
        with faster_moto_server():
            fast = raw_responses(boto3.client("dynamodb", region_name=REGION))

    # Then the responses are the same JSON, byte for byte
    assert len(expected) == 3
    assert fast == expected
