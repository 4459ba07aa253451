"""Fixtures of the contract tier: every RunStore implementation, on a pinned clock.

The DynamoDB store runs on moto (``mock_aws``, in process) against a table created from
template.yaml by ``infra.template.create_table``: the schema is never repeated here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from contract_records import FakeClock
from moto import mock_aws
from moto.dynamodb.models import DynamoDBBackend

from engine.memory import MemoryRunStore
from engine.ports import RunStore
from functions.aws.dynamodb_store import DynamoRunStore
from infra.template import create_table, load_template

TABLE = "hopgraph-contract"
REGION = "us-east-1"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    """template.yaml, parsed once."""
    return load_template()


@pytest.fixture(scope="session")
def aws_session() -> boto3.session.Session:
    """One botocore session for every test: each client built from it reuses the service
    models it already loaded (moto resets boto3's default session at every ``mock_aws``)."""
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )


def serialize_moto_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make moto's DynamoDB writes one at a time, as DynamoDB's are per item (emulator
    fidelity only; the store's code is the same).

    moto applies a transaction item by item and rolls a cancelled one back by putting back a
    deep copy of the whole table taken when it began, without a lock: with threads, a losing
    transaction's rollback erases what a concurrent winner committed meanwhile (seen in about
    one run in twenty of the 8-thread race). Its conditional PutItem is a read then a write,
    also unlocked. One re-entrant lock around every write (BatchWriteItem goes through
    put_item and delete_item; transactions call them too) restores DynamoDB's guarantees.
    """
    lock = threading.RLock()
    for name in ("put_item", "update_item", "delete_item", "transact_write_items"):
        original = getattr(DynamoDBBackend, name)

        def locked(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return _original(*args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, locked)


@pytest.fixture
def dynamodb(
    monkeypatch: pytest.MonkeyPatch, aws_session: boto3.session.Session, template: dict[str, Any]
) -> Iterator[Any]:
    """A DynamoDB client on moto, with the project's table created from template.yaml."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    serialize_moto_writes(monkeypatch)
    with mock_aws():
        client = aws_session.client("dynamodb")
        create_table(client, TABLE, template)
        yield client


@pytest.fixture
def dynamo_store(dynamodb: Any, clock: FakeClock) -> DynamoRunStore:
    return DynamoRunStore(TABLE, dynamodb, clock=clock)


@pytest.fixture(params=["memory", "dynamodb"])
def store(request: pytest.FixtureRequest, clock: FakeClock) -> RunStore:
    """Each RunStore implementation in turn: the contract suite runs once per store."""
    if request.param == "memory":
        return MemoryRunStore(clock=clock)
    store: RunStore = request.getfixturevalue("dynamo_store")
    return store
