"""moto's Query as the local stack's moto answers it (infra/moto/speedups.py): an index query,
a partition's query and a sorted partition's bisection give moto's own pages, byte for byte."""

from __future__ import annotations

import itertools
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from infra.moto import speedups
from infra.moto.speedups import SortedPartition, faster_moto
from tests.functional.test_moto_local import REGION, item


def runs_table(dynamodb: Any, name: str) -> None:
    """A table keyed as the store's: a run's partition, its items by sort key."""
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"},
                   {"AttributeName": "SK", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("PK", "SK")],
        BillingMode="PAY_PER_REQUEST",
    )  # fmt: skip


def partition_pages(
    dynamodb: Any, table: str, conditions: list[tuple[str, dict[str, str]]]
) -> list[bytes]:
    """Every page of run r1's partition under each sort key condition, both ways."""
    shapes = [
        {"ScanIndexForward": forward,
         "KeyConditionExpression": f"PK = :pk AND {condition}",
         "ExpressionAttributeValues": {":pk": {"S": "RUN#r1"}}
         | {name: {"S": value} for name, value in values.items()}}
        for (condition, values), forward in itertools.product(conditions, (True, False))
    ]  # fmt: skip
    return every_page(dynamodb, shapes, TableName=table, ConsistentRead=True)


def every_page(dynamodb: Any, shapes: list[dict[str, Any]], **common: Any) -> list[bytes]:
    """The raw JSON of every page, two items at a time, of each query: ``common`` with each
    of ``shapes``."""
    bodies: list[bytes] = []
    dynamodb.meta.events.register(
        "before-parse.dynamodb.*", lambda response_dict, **_: bodies.append(response_dict["body"])
    )
    for shape in shapes:
        start: dict[str, Any] = {}
        while "LastEvaluatedKey" in (page := dynamodb.query(Limit=2, **common, **shape, **start)):
            start = {"ExclusiveStartKey": page["LastEvaluatedKey"]}
    return bodies


def test_an_index_query_answers_as_motos_own_query() -> None:
    # Given runs on a status index, some without a status (not on the index)
    def runs_by_status(dynamodb: Any) -> list[bytes]:
        return every_page(
            dynamodb,
            [{"IndexName": "by_status", "ScanIndexForward": forward} for forward in (True, False)],
            TableName="indexed",
            KeyConditionExpression="#s = :s AND updated > :after",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": {"S": "running"}, ":after": {"S": "t1"}},
        )

    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(
            TableName="indexed",
            KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"},
                       {"AttributeName": "SK", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"}
                                  for n in ("PK", "SK", "status", "updated")],
            GlobalSecondaryIndexes=[{
                "IndexName": "by_status", "Projection": {"ProjectionType": "ALL"},
                "KeySchema": [{"AttributeName": "status", "KeyType": "HASH"},
                              {"AttributeName": "updated", "KeyType": "RANGE"}],
            }],
            BillingMode="PAY_PER_REQUEST",
        )  # fmt: skip
        for n in range(24):
            values = {"status": ["running", "done"][n % 2], "updated": f"t{n % 5}"}
            if n % 3 == 0:
                del values["status"]
            dynamodb.put_item(TableName="indexed", Item=item(f"RUN#{n}", "RUN", **values))
        expected = runs_by_status(dynamodb)

        # When the same queries go through the narrowed index query
        with faster_moto():
            fast = runs_by_status(boto3.client("dynamodb", region_name=REGION))

    # Then every page is the same JSON, byte for byte
    assert len(expected) == 6  # five running after t1, two ties on it: three pages each way
    assert fast == expected


def test_a_query_of_a_partition_answers_as_motos_own_query() -> None:
    # Given a run's partition of every kind of item, and another run's
    conditions = [
        ("SK BETWEEN :a AND :b", {":a": "RUN", ":b": "SUB$"}),
        ("begins_with(SK, :a)", {":a": "TASK#000001#"}),
        ("SK < :a", {":a": "STEP#000002"}),
        ("SK <= :a", {":a": "STEP#000002"}),
        ("SK > :a", {":a": "SUB#c1"}),
        ("SK >= :a", {":a": "SUB#c1"}),
        ("SK = :a", {":a": "RUN"}),
    ]

    def queries(dynamodb: Any) -> list[bytes]:
        return partition_pages(dynamodb, "runs", conditions)

    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        runs_table(dynamodb, "runs")
        keys = ["RUN", "FANIN#000001", "SUB#c1", "SUB#c2"]
        keys += [f"STEP#{n:06d}" for n in range(4)]
        keys += [f"TASK#000001#{n:06d}#grade" for n in range(7)] + ["TASK#000002#-#b"]
        for run in ("RUN#r1", "RUN#r2"):
            for key in keys:
                dynamodb.put_item(TableName="runs", Item=item(run, key, note=f"{run} {key}"))
        expected = queries(dynamodb)

        # When the same queries go through the narrowed partition query
        with faster_moto():
            fast = queries(boto3.client("dynamodb", region_name=REGION))

    # Then every page is the same JSON, byte for byte
    assert len(expected) > 2 * len(conditions)  # some conditions span pages
    assert fast == expected


PARTITION_CONDITIONS = [
    ("SK BETWEEN :a AND :b", {":a": "RUN", ":b": "SUB$"}),
    ("SK BETWEEN :a AND :b", {":a": "STEP#000002", ":b": "SUB$"}),
    ("SK BETWEEN :a AND :b", {":a": "A", ":b": "B"}),
    ("begins_with(SK, :a)", {":a": "TASK#000001#"}),
    ("begins_with(SK, :a)", {":a": "TASK#000003#"}),
    ("begins_with(SK, :a)", {":a": "STEP#"}),
    ("SK < :a", {":a": "STEP#000002"}),
    ("SK <= :a", {":a": "STEP#000002"}),
    ("SK > :a", {":a": "SUB#c1"}),
    ("SK >= :a", {":a": "SUB#c1"}),
    ("SK >= :a", {":a": "ZZZ"}),
    ("SK = :a", {":a": "RUN"}),
    ("SK = :a", {":a": "NOPE"}),
]


def test_a_query_of_a_sorted_partition_answers_as_motos_own_query(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a run's partition of every kind of item, written in no order, some of them
    # deleted or put again, and a cancelled transaction undone by a copy of the table
    def queries(dynamodb: Any, table: str) -> list[bytes]:
        return partition_pages(dynamodb, table, PARTITION_CONDITIONS)

    keys = ["RUN", "FANIN#000001", "SUB#c1", "SUB#c2"]
    keys += [f"STEP#{n:06d}" for n in range(4)]
    keys += [f"TASK#000001#{n:06d}#grade" for n in range(23)] + ["TASK#000002#-#b"]
    gone = ["TASK#000001#000007#grade", "STEP#000003", "SUB#c2"]

    def fill(dynamodb: Any, table: str) -> None:
        runs_table(dynamodb, table)
        for n, key in enumerate(keys[7::-1] + keys[:7:-1] + gone):
            for run in ("RUN#r1", "RUN#r2"):
                dynamodb.put_item(TableName=table, Item=item(run, key, note=f"{run} {key} {n}"))
        for key in gone[:2]:
            dynamodb.delete_item(TableName=table, Key={"PK": {"S": "RUN#r1"}, "SK": {"S": key}})
        with pytest.raises(ClientError):  # its put of a new key is undone
            dynamodb.transact_write_items(TransactItems=[
                {"Put": {"TableName": table, "Item": item("RUN#r1", "SUB#c0")}},
                {"ConditionCheck": {"TableName": table, "Key": item("RUN#r1", "RUN"),
                                    "ConditionExpression": "attribute_not_exists(PK)"}},
            ])  # fmt: skip

    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        fill(dynamodb, "runs")
        expected = queries(dynamodb, "runs")

        # When the same partition, made with the patch, is queried through the bisection
        # (never the test of each item of the partition)
        def tested_item_by_item(*_: Any) -> list[Any]:
            raise AssertionError("a sorted partition's query tested every item of it")

        monkeypatch.setattr(speedups, "_kept_by_sort_key", tested_item_by_item)
        with faster_moto():
            fast_client = boto3.client("dynamodb", region_name=REGION)
            fill(fast_client, "sorted")
            from moto.dynamodb.models import dynamodb_backends
            from moto.dynamodb.models.dynamo_type import DynamoType

            table = dynamodb_backends["123456789012"][REGION].get_table("sorted")
            partition = table.items[DynamoType({"S": "RUN#r1"})]
            fast = queries(fast_client, "sorted")

    # Then every page is the same JSON, byte for byte, from a partition kept in order
    assert isinstance(partition, SortedPartition)
    assert partition.sort_values == sorted(partition.sort_values)
    assert len(partition.sort_values) == len(partition) == len(keys) - 2  # two deleted
    assert len(expected) > 2 * len(PARTITION_CONDITIONS)  # some conditions span pages
    assert fast == expected
