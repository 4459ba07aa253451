"""Prices, item sizes and the meter: every AWS request, capacity unit and index write a run
makes, counted from botocore event hooks (benchmarks/cost_per_step.py describes the model)."""

from __future__ import annotations

import base64
import json
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

PRICE_LAMBDA_REQUEST = 0.20 / 1e6
PRICE_LAMBDA_GB_S = 0.0000166667
PRICE_SQS_REQUEST = 0.40 / 1e6
PRICE_WRU = 0.625 / 1e6
PRICE_RRU = 0.125 / 1e6
PRICE_SFN_TRANSITION = 25.0 / 1e6
PRICE_SFN_EXPRESS_REQUEST = 1.00 / 1e6
PRICE_SFN_EXPRESS_GB_S = 0.00001667  # per GB-second, 64 MB minimum, 100 ms increments
PRICE_DURABLE_OPERATION = 8.00 / 1e6
PRICE_LOGS_GB = 0.50  # CloudWatch Logs ingestion, Lambda logs' first tier (us-east-1)
PRICE_HTTP_API_REQUEST = 1.00 / 1e6
PRICE_WS_MESSAGE = 1.00 / 1e6  # per 32 KB frame posted to a WebSocket subscriber
PRICE_S3_PUT = 5.00 / 1e6  # S3 Standard PUT requests, $0.005 per 1,000
PRICE_S3_GET = 0.40 / 1e6  # S3 Standard GET requests, $0.0004 per 1,000
BUCKET = "hopgraph-bench-values"
SQS_CHUNK = 64 * 1024
REGION = "us-east-1"
TABLE = "hopgraph-bench"
RUN_ID = re.compile(r"r_[0-9a-f]{24}")
COMMITS = ("PutItem", "TransactWriteItems")
TASK_TARGET_USD_PER_MILLION = 2.00
"""Target for parallel work with 1 KB states, in USD per million tasks (requests only)."""
ALL_IN_TARGETS = {"chain": 2.00, "fanout-10": 2.50, "map-100": 2.50}
"""All-in targets, USD per million tasks with 1 KB states at 50 runs in flight: a chain's
step at most 2.00, a fan-out branch or a map item at most 2.50."""


# ---------------------------------------------------------------------------- item sizes
def value_size(value: dict[str, Any]) -> int:
    """Bytes DynamoDB bills for one attribute value (AttributeValue JSON form)."""
    (kind, v), *_ = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        return len(v.strip("-").replace(".", "").lstrip("0")) // 2 + 1
    if kind == "B":
        return len(base64.b64decode(v)) if isinstance(v, str) else len(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + value_size(x) for x in v)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(x) for k, x in v.items())
    if kind == "SS":
        return sum(len(x.encode()) for x in v)
    if kind == "NS":
        return sum(len(x) // 2 + 1 for x in v)
    return sum(len(x) for x in v)  # BS


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def projection(
    gsi: dict[str, Any], table_keys: list[dict[str, str]]
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """What of an item the index ``gsi`` holds, as template.yaml projects it: its keys and
    the table's, plus every attribute (ALL) or the ones it names (INCLUDE). An index write is
    billed per KB of that entry, not of the whole item."""
    kind = gsi["Projection"]["ProjectionType"]
    keys = {k["AttributeName"] for k in [*gsi["KeySchema"], *table_keys]}
    kept = keys | set(gsi["Projection"].get("NonKeyAttributes", []))

    def entry(item: dict[str, Any]) -> dict[str, Any]:
        if kind == "ALL" or not item:
            return item
        return {name: value for name, value in item.items() if name in kept}

    return entry


def wru(size: int) -> int:
    return max(1, math.ceil(size / 1024))


def rru(size: int, consistent: bool) -> float:
    units = max(1, math.ceil(size / 4096))
    return units if consistent else units / 2


# ---------------------------------------------------------------------------- the meter
@dataclass
class Meter:
    """Counts requests, capacity units and the critical path, from botocore event hooks."""

    lookup: Any
    """A DynamoDB client with no hooks, to size updated items without counting the read."""
    requests: Counter[str] = field(default_factory=Counter)
    sqs_billed: int = 0
    wru: float = 0.0
    rru: float = 0.0
    invokes: list[dict[str, Any]] = field(default_factory=list)
    index_wru: float = 0.0
    """Write units of the table's global secondary indexes: every write of an item an index
    holds is written to that index too (a key change deletes and puts), billed per KB of the
    item as the index projects it."""
    indexes: list[tuple[str, str, Callable[[dict[str, Any]], dict[str, Any]]]] = field(
        default_factory=list
    )
    """(partition key, sort key) attribute names of each index (template.yaml), and what of
    an item the index holds (its projection)."""
    path: list[int] = field(default_factory=list)
    aws_seconds: float = 0.0
    """Time spent inside AWS calls made by the handler (moto's emulation, in-process)."""
    in_handler: ContextVar[bool] = field(
        default_factory=lambda: ContextVar("bench_in_handler", default=False)
    )
    """Set while the handler runs; a context variable, so that the threads the SQS worker
    applies a batch's records on (each in a copy of its context) count too."""
    _since_commit: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, client: Any) -> None:
        events = client.meta.events
        events.register("before-parameter-build", self._keep_params)
        events.register_first("before-call", self._before)
        events.register("after-call", self._after)

    def _keep_params(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["bench_params"] = params

    def _before(self, model: Any, context: dict[str, Any], **_: Any) -> Any:
        service, op = model.service_model.service_name, model.name
        params = context.get("bench_params", {})
        if service == "dynamodb" and self.indexes:
            context["bench_old"] = self._items_before(op, params)
        context["bench_started"] = time.perf_counter()
        with self._lock:
            self.requests[f"{service}.{op}"] += 1
            if service == "sqs":
                self.sqs_billed += _sqs_chunks(op, params)
            elif service == "dynamodb":
                self.wru += self._write_units(op, params)
            if self._on_path(service, op):
                for run_id in set(RUN_ID.findall(json.dumps(params, default=str))):
                    self._since_commit[run_id] += 1
        if service == "lambda" and op == "Invoke":
            return self._accept_invoke(params)
        return None

    def _after(self, model: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any
               ) -> None:  # fmt: skip
        service, op = model.service_model.service_name, model.name
        params = context.get("bench_params", {})
        elapsed = time.perf_counter() - context.get("bench_started", time.perf_counter())
        with self._lock:
            if self.in_handler.get():
                self.aws_seconds += elapsed
            if service == "dynamodb":
                self.rru += _read_units(op, params, parsed)
                if "Error" not in parsed and context.get("bench_old"):
                    self.index_wru += self._index_units(op, params, context["bench_old"])
                if op == "TransactWriteItems":
                    self.wru += self._updated_item_units(params)
            if service == "sqs" and op == "ReceiveMessage":
                bodies = [m["Body"] for m in parsed.get("Messages", [])]
                self.sqs_billed += max(0, _chunks(sum(len(b.encode()) for b in bodies)) - 1)
                for run_id in set(RUN_ID.findall(" ".join(bodies))):
                    self._since_commit[run_id] += 1
            if service == "dynamodb" and op in COMMITS and "Error" not in parsed:
                self._close_path(params)

    @staticmethod
    def _on_path(service: str, op: str) -> bool:
        # Off the path: acknowledgements, and look-ups on the notifier's own threads (they
        # overlap the tool). A receive is counted once its messages are seen (after-call).
        if op in ("DeleteMessage", "DeleteMessageBatch", "ChangeMessageVisibilityBatch"):
            return False
        if threading.current_thread().name.startswith("notify"):
            return False
        return service != "sqs" or op != "ReceiveMessage"

    def _write_units(self, op: str, params: dict[str, Any]) -> float:
        if op == "PutItem":
            return wru(item_size(params["Item"]))
        if op == "TransactWriteItems":
            puts = [a["Put"]["Item"] for a in params["TransactItems"] if "Put" in a]
            return sum(2 * wru(item_size(item)) for item in puts)
        if op in ("UpdateItem", "DeleteItem"):
            return 1  # not on a step's path here (graphs, cancels, connections)
        if op == "BatchWriteItem":
            requests = [r for rs in params["RequestItems"].values() for r in rs]
            return sum(wru(item_size(r["PutRequest"]["Item"])) if "PutRequest" in r else 1
                       for r in requests)  # fmt: skip
        return 0

    @staticmethod
    def _written_keys(op: str, params: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """(table, key) of every item a write request writes."""
        if op == "PutItem":
            item = params["Item"]
            return [(params["TableName"], {"PK": item["PK"], "SK": item["SK"]})]
        if op in ("UpdateItem", "DeleteItem"):
            return [(params["TableName"], params["Key"])]
        if op == "TransactWriteItems":
            found = []
            for action in params["TransactItems"]:
                for kind in ("Put", "Update", "Delete"):
                    if kind in action:
                        body = action[kind]
                        key = body.get("Key") or {
                            "PK": body["Item"]["PK"],
                            "SK": body["Item"]["SK"],
                        }
                        found.append((body["TableName"], key))
            return found
        return []

    def _items_before(self, op: str, params: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The items a write is about to change, read without being counted."""
        return {
            json.dumps(key, sort_keys=True): self.lookup.get_item(TableName=table, Key=key).get(
                "Item", {}
            )
            for table, key in self._written_keys(op, params)
        }

    def _index_units(self, op: str, params: dict[str, Any], before: dict[str, Any]) -> float:
        units = 0.0
        for table, key in self._written_keys(op, params):
            after = self.lookup.get_item(TableName=table, Key=key).get("Item", {})
            old = before.get(json.dumps(key, sort_keys=True), {})
            for pk, sk, projected in self.indexes:
                was = (old.get(pk), old.get(sk)) if pk in old and sk in old else None
                now = (after.get(pk), after.get(sk)) if pk in after and sk in after else None
                entry_was, entry_now = projected(old), projected(after)
                if was is not None and now is not None and was == now:
                    # An update that changes no projected attribute leaves the index alone
                    units += wru(item_size(entry_now)) if entry_was != entry_now else 0
                    continue
                units += wru(item_size(entry_was)) if was is not None else 0  # deleted from it
                units += wru(item_size(entry_now)) if now is not None else 0  # put into it
        return units

    def _updated_item_units(self, params: dict[str, Any]) -> float:
        units = 0.0
        for action in params["TransactItems"]:
            if "Update" in action:
                update = action["Update"]
                item = self.lookup.get_item(TableName=update["TableName"], Key=update["Key"])
                units += 2 * wru(item_size(item.get("Item", {})))
        return units

    def _close_path(self, params: dict[str, Any]) -> None:
        items = [params["Item"]] if "Item" in params else [
            a["Put"]["Item"] for a in params.get("TransactItems", []) if "Put" in a
        ]  # fmt: skip
        for item in items:
            sk = item.get("SK", {}).get("S", "")
            if sk.startswith("STEP#"):
                run_id = item["PK"]["S"].removeprefix("RUN#")
                if int(sk.removeprefix("STEP#")) > 0:
                    self.path.append(self._since_commit[run_id])
                self._since_commit[run_id] = 0

    def _accept_invoke(self, params: dict[str, Any]) -> Any:
        from botocore.awsrequest import AWSResponse

        self.invokes.append(json.loads(params["Payload"]))
        reply = {"StatusCode": 202, "ResponseMetadata": {"HTTPStatusCode": 202}}
        return AWSResponse("https://lambda.us-east-1.amazonaws.com/", 202, {}, None), reply


def _chunks(size: int) -> int:
    return max(1, math.ceil(size / SQS_CHUNK))


def _sqs_chunks(op: str, params: dict[str, Any]) -> int:
    if op == "SendMessage":
        return _chunks(len(params["MessageBody"].encode()))
    if op == "SendMessageBatch":
        return _chunks(sum(len(e["MessageBody"].encode()) for e in params["Entries"]))
    return 1


def _read_units(op: str, params: dict[str, Any], parsed: dict[str, Any]) -> float:
    consistent = bool(params.get("ConsistentRead"))
    if op == "GetItem":
        return rru(item_size(parsed.get("Item", {})), consistent)
    if op in ("Query", "Scan"):
        return rru(sum(item_size(i) for i in parsed.get("Items", [])), consistent)
    if op == "BatchGetItem":
        items = [i for rs in parsed.get("Responses", {}).values() for i in rs]
        return sum(rru(item_size(i), consistent) for i in items)
    if op == "TransactWriteItems":
        return 0.0
    return 0.0
