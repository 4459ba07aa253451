"""What the DynamoDB store writes, byte for byte: a format change shows here, in review.

Items are read back raw from the (moto) table after the store wrote them, so these are the
stored shapes, not just what the mapping functions return.
"""

from __future__ import annotations

import json
import random
import string
import zlib
from typing import Any

import pytest
from contract_records import T0, connection, final_step, graph, run, step

from engine.errors import InvalidInputError
from engine.ports import AttemptRecord, FoldRecord, RunEnd, TaskRecord
from engine.superstep import state_size
from functions.aws import dynamodb_items as items
from functions.aws.dynamodb_store import DynamoRunStore

Item = dict[str, Any]


def stored(client: Any, store: DynamoRunStore, pk: str, sk: str) -> Item:
    found: Item = client.get_item(
        TableName=store.table, Key={"PK": {"S": pk}, "SK": {"S": sk}}, ConsistentRead=True
    )["Item"]
    return found


# ------------------------------------------------------------------------------- snapshots


def test_graph_item(dynamodb: Any, dynamo_store: DynamoRunStore) -> None:
    dynamo_store.put_graph(graph())
    assert stored(dynamodb, dynamo_store, "GRAPH#g1", "GRAPH") == {
        "PK": {"S": "GRAPH#g1"},
        "SK": {"S": "GRAPH"},
        "name": {"S": "review"},
        "definition": {"S": '{"name":"review","entry":"a","nodes":{"a":{"tool":"t"}},"edges":{}}'},
        "created_at": {"N": "1700000000.25"},
        "owner": {"S": "alice"},
        "GSI1PK": {"S": "GRAPHS"},
        "GSI1SK": {"S": "2023-11-14T22:13:20.250000Z#g1"},
        "GSI3PK": {"S": "OWNER#alice#GRAPHS"},
        "GSI3SK": {"S": "2023-11-14T22:13:20.250000Z#g1"},
    }


def test_run_header_item(dynamodb: Any, dynamo_store: DynamoRunStore) -> None:
    # Given a new run
    dynamo_store.create_run(run(idempotency_key="key-1", owner="alice"))
    header = {
        "PK": {"S": "RUN#r1"},
        "SK": {"S": "RUN"},
        "graph_id": {"S": "g1"},
        "status": {"S": "running"},
        "input": {"S": '{"code":"def f(): pass"}'},
        "max_steps": {"N": "20"},
        "node": {"S": "a"},
        "created_at": {"N": "1700000000.25"},
        "updated_at": {"N": "1700000000.25"},
        "idempotency_key": {"S": "key-1"},
        "owner": {"S": "alice"},
        "GSI1PK": {"S": "GRAPH#g1"},
        "GSI1SK": {"S": "2023-11-14T22:13:20.250000Z#r1"},
        "GSI2PK": {"S": "STATUS#running#1"},  # the shard of r1
        "GSI2SK": {"S": "2023-11-14T22:13:20.250000Z#r1"},
        "GSI3PK": {"S": "OWNER#alice#RUNS"},
        "GSI3SK": {"S": "2023-11-14T22:13:20.250000Z#r1"},
    }
    assert stored(dynamodb, dynamo_store, "RUN#r1", "RUN") == header
    # When its last step fails it: status, error, updated_at and the status index change
    dynamo_store.commit_step(final_step(status="failed"), RunEnd("failed", "boom"))
    assert stored(dynamodb, dynamo_store, "RUN#r1", "RUN") == {
        **header,
        "status": {"S": "failed"},
        "error": {"S": "boom"},
        "updated_at": {"N": "1700000001.25"},
        "GSI2PK": {"S": "STATUS#failed#1"},  # the same shard
    }


def test_step_item(dynamodb: Any, dynamo_store: DynamoRunStore) -> None:
    # A step committed by a store that does not know the state before it: a snapshot, whose
    # updates are named by key (their values are in its state)
    dynamo_store.create_run(run())
    dynamo_store.commit_step(step(seq=3, error="retried", attempt=2, duration_ms=0.000012))
    assert stored(dynamodb, dynamo_store, "RUN#r1", "STEP#000003") == {
        "PK": {"S": "RUN#r1"},
        "SK": {"S": "STEP#000003"},
        "node": {"S": "a"},
        "tool": {"S": "t"},
        "status": {"S": "ok"},
        "delta": {"S": '{"keys":["n"]}'},
        "state": {"S": '{"code":"def f(): pass","n":3}'},
        "next_node": {"S": "a"},
        "started_at": {"N": "1700000004.25"},
        "duration_ms": {"N": "0.000012"},
        "error": {"S": "retried"},
        "attempt": {"N": "2"},
        "committed_by": {"S": "delivery-3"},
        "run_status": {"S": "running"},
    }


def test_attempt_item(dynamodb: Any, dynamo_store: DynamoRunStore) -> None:
    dynamo_store.create_run(run())
    dynamo_store.commit_attempt(AttemptRecord(
        run_id="r1", seq=3, node="grade", index=7, attempt=2, tool="t",
        error="tool 't' failed: ConnectionError: reset", error_type="ConnectionError",
        started_at=T0, duration_ms=1.5, retry_at=T0 + 2, committed_by="delivery-3",
    ))  # fmt: skip
    assert stored(dynamodb, dynamo_store, "RUN#r1", "ATTEMPT#000003#000007#0002#grade") == {
        "PK": {"S": "RUN#r1"},
        "SK": {"S": "ATTEMPT#000003#000007#0002#grade"},
        "node": {"S": "grade"},
        "tool": {"S": "t"},
        "error": {"S": "tool 't' failed: ConnectionError: reset"},
        "error_type": {"S": "ConnectionError"},
        "started_at": {"N": "1700000000.25"},
        "duration_ms": {"N": "1.5"},
        "index": {"N": "7"},
        "retry_at": {"N": "1700000002.25"},
        "committed_by": {"S": "delivery-3"},
    }


def test_fold_and_task_count_items(dynamodb: Any, dynamo_store: DynamoRunStore) -> None:
    dynamo_store.create_run(run())
    dynamo_store.commit_task(TaskRecord(
        run_id="r1", seq=3, node="grade", index=7, tool="t", status="ok", updates={},
        targets=(), started_at=T0, duration_ms=1500.0,
    ), counted=True)  # fmt: skip
    assert stored(dynamodb, dynamo_store, "RUN#r1", "FANIN#000003") == {
        "PK": {"S": "RUN#r1"},
        "SK": {"S": "FANIN#000003"},
        "done": {"N": "1"},
        "last_at": {"N": "1700000001.75"},
    }
    dynamo_store.commit_fold(FoldRecord(
        run_id="r1", seq=3, cursor="001024#grade", state={"total": 3}, folded={"count": 1024},
        node="grade", index=7, pages=1, committed_by="delivery-3", updated_at=T0,
    ), None)  # fmt: skip
    assert stored(dynamodb, dynamo_store, "RUN#r1", "FOLD#000003") == {
        "PK": {"S": "RUN#r1"},
        "SK": {"S": "FOLD#000003"},
        "cursor": {"S": "001024#grade"},
        "state": {"S": '{"total":3}'},
        "folded": {"S": '{"count":1024}'},
        "node": {"S": "grade"},
        "index": {"N": "7"},
        "pages": {"N": "1"},
        "updated_at": {"N": "1700000000.25"},
        "committed_by": {"S": "delivery-3"},
    }


def test_delta_step_item(dynamodb: Any, dynamo_store: DynamoRunStore) -> None:
    # A step committed after its slot read (a worker's): what it changed, no state
    dynamo_store.create_run(run())
    dynamo_store.read_slot("r1", 0)
    dynamo_store.commit_step(step(seq=0))
    assert stored(dynamodb, dynamo_store, "RUN#r1", "STEP#000000") == {
        "PK": {"S": "RUN#r1"},
        "SK": {"S": "STEP#000000"},
        "node": {"S": "a"},
        "tool": {"S": "t"},
        "status": {"S": "ok"},
        "delta": {"S": '{"set":{"n":0}}'},
        "next_node": {"S": "a"},
        "started_at": {"N": "1700000001.25"},
        "duration_ms": {"N": "1.5"},
        "attempt": {"N": "1"},
        "committed_by": {"S": "delivery-0"},
        "run_status": {"S": "running"},
    }


def test_connection_and_subscription_items(dynamodb: Any, dynamo_store: DynamoRunStore) -> None:
    dynamo_store.save_connection(connection("c1"))
    dynamo_store.subscribe("c1", "r1")
    endpoint = {"S": "https://ws.example/c1"}
    expires = {"N": str(int(T0) + 3600)}
    assert stored(dynamodb, dynamo_store, "CONN#c1", "CONN") == {
        "PK": {"S": "CONN#c1"}, "SK": {"S": "CONN"}, "endpoint": endpoint, "expires_at": expires,
    }  # fmt: skip
    assert stored(dynamodb, dynamo_store, "RUN#r1", "SUB#c1") == {
        "PK": {"S": "RUN#r1"}, "SK": {"S": "SUB#c1"}, "endpoint": endpoint, "expires_at": expires,
    }  # fmt: skip
    assert stored(dynamodb, dynamo_store, "CONN#c1", "SUB#r1") == {
        "PK": {"S": "CONN#c1"}, "SK": {"S": "SUB#r1"}, "expires_at": expires,
    }  # fmt: skip


# ------------------------------------------------------------------------------- sizes

# A code review state of about 1 KB, as the code_review toolkit leaves it after evaluation.
REVIEW_STATE: dict[str, Any] = {
    "code": (
        "def load(path):\n    with open(path) as f:\n        data = f.read()\n"
        "    return parse(data)\n\n\ndef parse(text, strict=False, cache={}):\n    rows = []\n"
        "    for line in text.splitlines():\n        if line.strip():\n"
        "            rows.append(line.split(','))\n    return rows\n"
    ),
    "functions": [
        {"name": "load", "lineno": 1, "end_lineno": 4, "args": ["path"], "docstring": False},
        {"name": "parse", "lineno": 7, "end_lineno": 12, "args": ["text", "strict", "cache"],
         "docstring": False},
    ],
    "complexity": {"load": 1, "parse": 4},
    "issues": [
        {"kind": "missing_docstring", "line": 1, "function": "load",
         "message": "load has no docstring", "severity": "low"},
        {"kind": "missing_docstring", "line": 7, "function": "parse",
         "message": "parse has no docstring", "severity": "low"},
        {"kind": "mutable_default", "line": 7, "function": "parse",
         "message": "argument cache defaults to a mutable value", "severity": "high"},
    ],
    "suggestions": [
        "Add a docstring to load", "Add a docstring to parse",
        "Default cache to None and create the dict inside parse",
    ],
    "quality_score": 5.2,
    "iteration": 1,
}  # fmt: skip


def test_a_step_with_a_1_kb_state_is_one_write_unit(
    dynamodb: Any, dynamo_store: DynamoRunStore
) -> None:
    # Given a realistic ~1 KB state, and a step with real-sized ids and timings
    assert 1000 <= state_size(REVIEW_STATE) <= 1100
    record = step(
        seq=4, node="evaluate", tool="evaluate_quality", state=REVIEW_STATE,
        updates={"quality_score": 5.2, "iteration": 1}, next_node="improve",
        started_at=1_700_000_123.456789, duration_ms=3.217,
        committed_by="059f36b4-87a3-44ab-83d2-661c9b3aa6bf",
    )  # fmt: skip
    # When it is committed
    dynamo_store.commit_step(record)
    # Then the stored item (names + values, as DynamoDB bills it) is under 1 KB: 1 WRU
    item = stored(dynamodb, dynamo_store, "RUN#r1", "STEP#000004")
    assert "B" in item["state"]
    assert items.item_size(item) < 1024
    assert dynamo_store.get_step("r1", 4) == record


def test_small_json_is_a_string_and_larger_json_is_compressed() -> None:
    small = {"text": "x" * (items.COMPRESS_ABOVE - 11)}
    large = {"text": "x" * (items.COMPRESS_ABOVE - 10)}
    assert len(json.dumps(small, separators=(",", ":"))) == items.COMPRESS_ABOVE
    assert items.json_attr(small) == {"S": json.dumps(small, separators=(",", ":"))}
    compressed = items.json_attr(large)
    assert json.loads(zlib.decompress(compressed["B"])) == large
    assert items.json_value(compressed) == large
    assert items.json_value(items.json_attr({"é": "\ud800"})) == {"é": "\ud800"}


def _incompressible(size: int) -> str:
    rng = random.Random(11)
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(size))


def test_huge_updates_are_named_by_key_in_a_snapshot(
    dynamodb: Any, dynamo_store: DynamoRunStore
) -> None:
    # Given a 300 KB state that does not compress, all of it updated by the step
    blob = _incompressible(300_000)
    state = {"blob": blob, "n": 1}
    record = step(state=state, updates={"blob": blob, "n": 1})
    # When it is committed as a snapshot
    dynamo_store.commit_step(record)
    # Then the state is whole, and the updates name their keys only (values: see state)
    item = stored(dynamodb, dynamo_store, "RUN#r1", "STEP#000000")
    assert items.item_size(item) < items.MAX_ITEM_BYTES
    assert items.json_value(item["delta"]) == {"keys": ["blob", "n"]}
    assert items.json_value(item["state"]) == state
    assert dynamo_store.get_step("r1", 0).updates == record.updates  # type: ignore[union-attr]


def test_item_size_follows_dynamodb_rules() -> None:
    # Names count, strings are UTF-8 bytes, numbers about one byte per two digits plus one
    assert items.item_size({"PK": {"S": "abc"}}) == 5
    assert items.item_size({"é": {"S": "é"}}) == 4
    assert items.item_size({"n": {"N": "123"}}) == 1 + 3
    assert items.item_size({"n": {"N": "-0.0012300"}}) == 1 + 3
    assert items.item_size({"b": {"B": b"\x00" * 10}, "t": {"BOOL": True}}) == 11 + 2
    assert items.item_size({"m": {"M": {"k": {"S": "v"}}}}) == 1 + 3 + (1 + 1 + 1)
    assert items.item_size({"l": {"L": [{"S": "ab"}, {"NULL": True}]}}) == 1 + 3 + 3 + 2


@pytest.mark.parametrize("value", [T0, 0.000012, 1e-9, 3.0, 1.5e20, 123456789.123456789, 7])
def test_numbers_are_exact_and_plain(value: float) -> None:
    attr = items.num(value)
    assert "e" not in attr["N"].lower()
    assert float(attr["N"]) == value


# ------------------------------------------------------------------------------- cursors


def test_a_cursor_is_opaque_and_checked() -> None:
    position = {"PK": "RUN#r1", "SK": "RUN", "GSI1PK": "GRAPH#g1", "GSI1SK": "2023#r1"}
    cursor = items.encode_cursor(position)
    assert set(cursor) <= set(string.ascii_letters + string.digits + "-_")
    decoded = items.decode_cursor(cursor)
    assert items.start_key(decoded, "GSI1", "GRAPH#g1")["GSI1SK"] == {"S": "2023#r1"}
    bad = [
        lambda: items.decode_cursor("%%%"),
        lambda: items.decode_cursor("bm90IGpzb24"),  # base64 of "not json"
        lambda: items.start_key(decoded, "GSI1", "GRAPH#g2"),  # another partition
        lambda: items.start_key(decoded, "GSI2", "GRAPH#g1"),  # another index
        lambda: items.start_key({**decoded, "PK": 1}, "GSI1", "GRAPH#g1"),
        lambda: items.start_key(["PK"], "GSI1", "GRAPH#g1"),
    ]
    for attempt in bad:
        with pytest.raises(InvalidInputError):
            attempt()
