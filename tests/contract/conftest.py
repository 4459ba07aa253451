"""Fixtures of the contract tier: every RunStore implementation, on a pinned clock.

The DynamoDB store runs on moto (``mock_aws``, in process) against a table created from
template.yaml by ``infra.template.reader.create_table``: the schema is never repeated here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from contract_records import FakeClock
from moto import mock_aws

from engine.memory import MemoryRunStore
from engine.ports import RunStore
from functions.aws.dynamodb_store import DynamoRunStore
from infra.moto.fidelity import serialize_dynamodb_writes
from infra.template.reader import create_table, load_template

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


@pytest.fixture
def dynamodb(
    monkeypatch: pytest.MonkeyPatch, aws_session: boto3.session.Session, template: dict[str, Any]
) -> Iterator[Any]:
    """A DynamoDB client on moto, with the project's table created from template.yaml."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    # moto's writes one at a time, as DynamoDB's are per item (infra/moto/fidelity.py): the
    # 8-thread race otherwise loses a winner now and then
    with mock_aws(), serialize_dynamodb_writes():
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
