"""Large values (engine/blobs.py): a state of several megabytes round-trips on every store; the
DynamoDB store keeps each large value once per run in S3 (moto's), content-addressed, and its
items hold pointers."""

from __future__ import annotations

import hashlib
import random
import string
from collections.abc import Iterator
from typing import Any

import pytest
from contract_records import FakeClock, run, step

from engine import blobs, deltas
from engine.errors import NotFoundError
from engine.memory import MemoryRunStore
from engine.ports import RunStore
from functions.aws import dynamodb_items as items
from functions.aws.dynamodb_store import DynamoRunStore
from functions.aws.s3_blobs import S3BlobStore

BUCKET = "hopgraph-contract-values"
MB = 1024 * 1024


def _text(size: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(string.ascii_letters) for _ in range(size))


class CountingBlobs:
    """An S3 blob store that counts its writes."""

    def __init__(self, inner: S3BlobStore) -> None:
        self.inner = inner
        self.puts: list[str] = []

    def put(self, key: str, data: bytes) -> None:
        self.puts.append(key)
        self.inner.put(key, data)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)


@pytest.fixture
def s3(dynamodb: Any, aws_session: Any) -> Any:
    client = aws_session.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def counting(s3: Any) -> CountingBlobs:
    return CountingBlobs(S3BlobStore(BUCKET, s3))


@pytest.fixture(params=["memory", "dynamodb+s3"])
def big_store(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[RunStore]:
    if request.param == "memory":
        yield MemoryRunStore(clock=clock)
        return
    dynamodb = request.getfixturevalue("dynamodb")
    blob_store = request.getfixturevalue("counting")
    yield DynamoRunStore("hopgraph-contract", dynamodb, clock=clock, blob_store=blob_store)


def _cold(store: RunStore) -> RunStore:
    if isinstance(store, DynamoRunStore):
        return DynamoRunStore(store.table, store._client, clock=store._clock,
                              blob_store=store._blobs)  # fmt: skip
    return store


def _grow(store: RunStore, count: int) -> list[dict[str, Any]]:
    """A run whose input holds a 1 MB document and whose steps each add a 1 MB value."""
    state: dict[str, Any] = {"doc": _text(MB, 0)}
    store.create_run(run(input=state))
    states = []
    for seq in range(count):
        store.read_slot("r1", seq)
        updates = {f"part{seq}": _text(MB, seq + 1), "n": seq}
        state = {**state, **updates}
        store.commit_step(step(seq=seq, updates=updates, state=state))
        states.append(state)
    return states


@pytest.mark.slow  # megabytes compressed, stored and read back: make test, not make check
def test_a_state_of_five_megabytes_round_trips(big_store: RunStore) -> None:
    # Given a run whose state grows by 1 MB a step to 5 MB
    states = _grow(big_store, 4)
    # Then every step, its updates and the run read back whole, warm and cold
    reader = _cold(big_store)
    for seq, state in enumerate(states):
        got = reader.get_step("r1", seq)
        assert got is not None and got.state == state
        assert got.updates == {f"part{seq}": state[f"part{seq}"], "n": seq}
    assert reader.get_run("r1").state == states[-1]
    assert reader.get_run("r1").input == {"doc": _text(MB, 0)}
    assert [s.state for s in reader.list_steps("r1").items] == states
    assert _cold(big_store).read_slot("r1", 4).previous.state == states[-1]  # type: ignore[union-attr]


def test_a_large_value_is_in_s3_under_its_digest_and_the_item_holds_a_pointer(
    big_store: RunStore, s3: Any
) -> None:
    if not isinstance(big_store, DynamoRunStore):
        pytest.skip("the memory store keeps values in memory")
    # Given a step that adds a 1 MB value
    _grow(big_store, 1)
    value = _text(MB, 1)
    data = blobs.encoded(value)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    # Then S3 has the value's JSON under the run and its digest
    key = f"runs/r1/{digest.removeprefix('sha256:')}"
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == data
    # And the step's item holds the pointer, well inside DynamoDB's item limit
    found = s3_item = big_store._client.get_item(
        TableName=big_store.table, Key=items.step_key("r1", 0)
    )["Item"]
    assert items.item_size(s3_item) < 4096
    delta = items.json_value(found["delta"])
    assert delta["set"]["part0"] == {"$blob": digest, "bytes": len(data)}


def test_a_large_value_is_written_once_per_run(
    big_store: RunStore, counting: CountingBlobs
) -> None:
    if not isinstance(big_store, DynamoRunStore):
        pytest.skip("the memory store keeps values in memory")
    # Given a 1 MB input, unchanged through a snapshot boundary
    big_store.create_run(run(input={"doc": _text(MB, 0)}))
    state: dict[str, Any] = {"doc": _text(MB, 0)}
    for seq in range(deltas.SNAPSHOT_EVERY + 1):
        big_store.read_slot("r1", seq)
        state = {**state, "n": seq}
        big_store.commit_step(step(seq=seq, updates={"n": seq}, state=state))
    # Then the document went to S3 once: the snapshot holds the same pointer
    assert len(counting.puts) == 1
    boundary = big_store._client.get_item(
        TableName=big_store.table, Key=items.step_key("r1", deltas.SNAPSHOT_EVERY - 1)
    )["Item"]
    assert blobs.is_pointer(items.json_value(boundary["state"])["doc"])
    assert _cold(big_store).get_run("r1").state == state


def test_a_value_past_its_retention_reads_as_not_found(big_store: RunStore, s3: Any) -> None:
    if not isinstance(big_store, DynamoRunStore):
        pytest.skip("the memory store keeps values in memory")
    # Given a run whose large value the bucket's lifecycle rule has expired
    _grow(big_store, 1)
    for found in s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/r1/")["Contents"]:
        s3.delete_object(Bucket=BUCKET, Key=found["Key"])
    # Then reading the step says what is gone, rather than a partial state
    with pytest.raises(NotFoundError):
        _cold(big_store).get_step("r1", 0)
