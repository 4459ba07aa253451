"""What one step of a run costs on AWS: requests, capacity units and dollars, measured on moto.

Runs many runs at once through the REAL worker handler, on moto in-process, with the
resources of template.yaml: in SQS mode the step queue feeds the worker through
``infra.stack.event_source`` (batches of 10, as Lambda's event source takes them); in self-invoke
mode every Lambda ``Invoke`` the worker makes is answered here and the invocation run
in-process. botocore event hooks count every AWS request by service and operation
(``before-parameter-build`` keeps the call's parameters, ``before-call`` counts it,
``after-call`` reads what came back) and size every DynamoDB item written and read:

- item size = attribute names + values (strings and binaries by length, numbers ~ half
  their digits + 1, 3 bytes of overhead per list or map element), as DynamoDB bills them;
- write request units: ceil(size / 1 KB) per item written, doubled in a transaction; the
  header's update is sized after the write (read back without being counted);
- read request units: ceil(size / 4 KB) per strongly consistent read (a query: of the sum of
  its items), half that for eventually consistent reads, and at least one read unit;
- SQS: one request per 64 KB chunk of payload; Lambda: invocations, and GB-seconds at the
  template's MemorySize over the measured duration of each invocation (ms, rounded up). The
  duration is measured in-process, moto included: moto stands in for the network round trips
  the function would wait for in AWS (minus moto's costs that grow with the data, see
  tests/faults/moto_speedups.py).

Prices: us-east-1 public list prices (Lambda $0.20 per million requests and $0.0000166667 per
GB-s; SQS $0.40 per million requests; DynamoDB on demand $0.625 per million write and $0.125
per million read request units), against AWS Step Functions Standard at $25 per million state
transitions (one transition per step) as the reference; S3 (large state values) $0.005 per
1,000 PUT and $0.0004 per 1,000 GET requests.

The critical path of a step is the serial chain of requests between the commit of step n-1
and the commit of step n of the same run (dispatch, receive, any read, commit), counted per
run; deletes are off it, and so is the slot check's one read (the step before and the run's
subscribers, on its own thread while the tool runs: it adds to a step's time only when the
tool is quicker than the read), which the ``beside`` column counts per step. A state too
large to travel inside the hop is read first, on the path (the 50 KB rows). The last line is
``usd_per_million_steps X critical_path_requests N`` for SQS dispatch with a 1 KB state.

Parallel work is priced per task (one node run; a map item is one task; a chain's step is
one task), with a 1 KB state, in both dispatch modes, beside the chain's loop:

- ``fanout-10``: ``plan`` fans out to ten nodes that a ``join`` node waits for (12 tasks in
  3 supersteps per run);
- ``map-100``: one map node over a list of 100 items, ``max_concurrency`` 20 (100 tasks in
  one superstep per run).

Tasks are counted from the runs' committed logs. The table gives, per task, every AWS
request (all services and operations, acknowledgements included) and USD per million tasks
against the target of 2.00 (1 KB states), and says when a figure misses it.

The requests are not the whole bill. The last table adds, per task, what they leave out,
and prints the all-in figure beside today's, against the all-in targets (1 KB states, at the
benchmark's traffic: a chain's step at most 2.00 USD per million, a branch or map item at most
2.50):

- index writes: each write of an item that a global secondary index holds (the run header)
  is written to the index too, per KB of the index entry (the keys and the attributes the
  template projects; a key change: a delete and a put; an update that changes nothing the
  index projects: no index write); the items are read before and after each write,
  uncounted, to size them;
- log ingestion: every byte the handlers write at INFO (the template's default LogLevel),
  JSON lines and EMF metric lines alike, at 0.50 USD per GB (Lambda logs' first tier);
  Lambda's START/END/REPORT lines are INFO system logs, kept out by SystemLogLevel WARN;
- the HTTP API request that starts each run (1.00 USD per million).

Not counted: X-Ray traces (Tracing: Active samples invocations; its price was not looked
up), WebSocket messages to subscribers (1.00 USD per million 32 KB frames, per subscriber
per step), and the SQS event source's idle polling (a fixed cost per month, not per step).
The same shapes run again with 1 run in flight, where each SQS batch carries one hop, and
the report says which dispatch mode costs less there.

The state rows (lean steps, engine/deltas.py) run longer chains with SQS dispatch: a 50 KB
state whose steps each change about 1 KB and an agent's message list growing 2 KB a step, for
100 steps each, beside the 1 KB chain, each stored lean (a warm worker holds the run's last
state), lean on cold workers (every invocation a new worker: each read from the nearest
snapshot) and whole (as before).
The last line gains ``usd_per_million_steps_50kb X`` (the 50 KB row, lean; target 3.00).

Run: ``.venv/bin/python benchmarks/cost_per_step.py [--runs N] [--only-states]``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import math
import os
import random
import re
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
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
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: make tests.faults.moto_speedups importable
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
    beside_tool: int = 0
    """Requests made on the slot check's thread, while the tool runs (off the path)."""
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
            if threading.current_thread().name.startswith("slot-check"):
                self.beside_tool += 1
            elif self._on_path(service, op):
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
        # overlap the tool; so does the slot check's read, counted apart by the caller). A
        # receive is counted once its messages are seen (after-call).
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


# ---------------------------------------------------------------------------- scenarios
@dataclass
class Result:
    mode: str
    state_kb: int
    steps: int
    meter: Meter
    invocations: int
    billed_ms: float
    aws_ms: float
    shape: str = "chain"
    runs: int = 0
    tasks: int = 0
    """Node runs (a map item is one); a chain's equal its steps."""
    log_bytes: int = 0
    """Bytes the handlers wrote to their logs (JSON lines and metric lines), at INFO."""
    storage: str = "lean"
    """How steps were stored (:func:`run_scenario`)."""

    def per_step(self, value: float) -> float:
        return value / self.steps

    @property
    def requests(self) -> int:
        return sum(self.meter.requests.values())

    @property
    def usd_per_million_tasks(self) -> float:
        return self.usd_per_million * self.steps / self.tasks

    def usd_per_million_by_service(self) -> dict[str, float]:
        memory_gb = memory_size_mb() / 1024
        usd = {
            "lambda requests": self.invocations * PRICE_LAMBDA_REQUEST,
            "lambda GB-s": self.billed_ms / 1000 * memory_gb * PRICE_LAMBDA_GB_S,
            "sqs": self.meter.sqs_billed * PRICE_SQS_REQUEST,
            "dynamodb writes": self.meter.wru * PRICE_WRU,
            "dynamodb reads": self.meter.rru * PRICE_RRU,
            "s3": self.meter.requests["s3.PutObject"] * PRICE_S3_PUT
            + self.meter.requests["s3.GetObject"] * PRICE_S3_GET,
        }
        return {name: self.per_step(value) * 1e6 for name, value in usd.items()}

    @property
    def usd_per_million(self) -> float:
        return sum(self.usd_per_million_by_service().values())

    def usd_per_million_uncounted(self) -> dict[str, float]:
        """What the requests leave out, USD per million steps: index writes, log ingestion
        (the bytes the functions wrote, measured), and the HTTP API request that starts each
        run."""
        usd = {
            "index writes": self.meter.index_wru * PRICE_WRU,
            "log ingestion": self.log_bytes / 1e9 * PRICE_LOGS_GB,
            "api requests": self.runs * PRICE_HTTP_API_REQUEST,
        }
        return {name: self.per_step(value) * 1e6 for name, value in usd.items()}

    @property
    def usd_per_million_all_in(self) -> float:
        return self.usd_per_million + sum(self.usd_per_million_uncounted().values())

    def per_task(self, usd_per_million_steps: float) -> float:
        return usd_per_million_steps * self.steps / self.tasks

    @property
    def critical_path(self) -> float:
        return statistics.mean(self.meter.path) if self.meter.path else math.nan


def memory_size_mb() -> int:
    from infra.template.reader import function_definitions, load_template

    template = load_template()
    worker = template["Resources"]["WorkerFunction"]["Properties"]
    assert "WorkerFunction" in function_definitions(template)
    return int(worker.get("MemorySize", template["Globals"]["Function"]["MemorySize"]))


LOOP = {
    "name": "bench_loop",
    "entry": "inc",
    "nodes": {"inc": {"tool": "increment", "settings": {"key": "count"}}},
    "branches": {"inc": {"cases": [{"when": "count >= 20", "to": "END"}], "default": "inc"}},
}
BRANCHES = [f"branch{i}" for i in range(10)]
FANOUT = {
    "name": "bench_fanout_10",
    "entry": "plan",
    "state": {"done": {"reducer": "add"}},
    "nodes": {
        "plan": {"tool": "emit", "settings": {"key": "planned", "value": True}},
        **{b: {"tool": "emit", "settings": {"key": "done", "value": 1}} for b in BRANCHES},
        "join": {"tool": "emit", "settings": {"key": "joined", "value": True}},
    },
    "edges": {"plan": BRANCHES, "join": "END"},
    "joins": {"join": BRANCHES},
}
MAP = {
    "name": "bench_map_100",
    "entry": "grade",
    "state": {"graded": {"reducer": "add"}},
    "nodes": {
        "grade": {
            "tool": "emit",
            "settings": {"key": "graded", "value": 1},
            "map": {"over": "docs", "as": "doc", "max_concurrency": 20},
        }
    },
    "edges": {"grade": "END"},
}
AGENT = json.loads((Path(__file__).resolve().parents[1] / "examples" / "research_agent.json")
                   .read_text())  # fmt: skip
AGENT_ANSWER = AGENT["nodes"]["researcher"]["agent"]["responses"][-1]
RETRY = {
    "name": "bench_retry_3",
    "entry": "call",
    "nodes": {"call": {"tool": "flaky", "retry": {"initial_interval_s": 0, "jitter": False}}},
    "edges": {"call": "END"},
}
"""A task that fails twice and commits on its third attempt (engine/retries.py): two
attempt records and two retry hops besides the step's own write and dispatch."""
# Each task adds 1 to a key with the "add" reducer: the state stays at its size (1 KB) while
# the run's end state still proves every task ran (checked after each scenario). The agent
# (examples/research_agent.json, its scripted model) proves it by its answer; its model
# calls are priced apart (tokens x the model's price: GET /runs/{id} totals them).
STATE_STEPS = 100
"""Supersteps of the state rows' runs: past three snapshots (engine/deltas.py)."""


def _state_loop(name: str, tool: str) -> dict[str, Any]:
    return {
        "name": name,
        "entry": "step",
        "nodes": {"step": {"tool": tool}},
        "branches": {
            "step": {"cases": [{"when": f"count >= {STATE_STEPS}", "to": "END"}], "default": "step"}
        },
    }


SHAPES: dict[str, tuple[dict[str, Any], dict[str, Any], tuple[str, Any]]] = {
    "chain": (LOOP, {}, ("count", 20)),
    # The state rows (benchmarks/state_tools.py): a large state of which each step changes
    # about 1 KB, and an agent's message list that grows by 2 KB a step.
    "churn": (_state_loop("bench_churn", "churn"), {"count": 0}, ("count", STATE_STEPS)),
    "messages": (_state_loop("bench_messages", "converse"), {"count": 0}, ("count", STATE_STEPS)),
    "fanout-10": (FANOUT, {}, ("done", 10)),
    "map-100": (MAP, {"docs": list(range(100))}, ("graded", 100)),
    "agent": (AGENT, {}, ("answer", AGENT_ANSWER)),
    "retry-3": (RETRY, {}, ("attempts", 3)),
}
SHAPE_TOOLKITS = {
    "agent": "engine.toolkits.basics,engine.toolkits.research,functions.models.toolkit"
}


def payload(size: int) -> str:
    """``size`` characters that do not compress: the store zlib-compresses large states, and
    a state of repeated characters would make the figures meaninglessly small. Real states
    compress 2-4x, so these are the figures of the worst case."""
    raw = random.Random(size).randbytes(size)
    return base64.b64encode(raw).decode()[:size]


def sized_state(state_kb: int, fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` and a payload, about ``state_kb`` KB in all."""
    size = state_kb * 1024 - 40 - len(json.dumps(fields))  # 40: the count and the keys
    return {**fields, "payload": payload(size)}


def count_tasks(store: Any, run_id: str) -> int:
    """The tasks of a run's committed log: a superstep's tasks, or one for a lone step."""
    tasks, after = 0, -1
    while page := store.list_steps(run_id, after=after).items:
        tasks += sum(max(1, len(step.tasks)) for step in page)
        after = page[-1].seq
    return tasks


def run_scenario(
    mode: str, state_kb: int, runs: int, shape: str = "chain", storage: str = "lean"
) -> Result:
    """``runs`` runs of the ``shape`` graph (the chain: the 20-step loop), all in flight at
    once, with a ``state_kb`` state. ``storage``: ``lean`` (engine/deltas.py, as deployed),
    ``cold`` (the same, on workers that never hold a run's last state: every read from the
    nearest snapshot), ``full`` (the full state at every step, as before lean steps)."""
    from engine import deltas

    every = deltas.SNAPSHOT_EVERY
    if storage == "full":
        deltas.SNAPSHOT_EVERY = 1
    try:
        result = _run_scenario(mode, state_kb, runs, shape, storage)
    finally:
        deltas.SNAPSHOT_EVERY = every
    result.storage = storage
    return result


def _run_scenario(mode: str, state_kb: int, runs: int, shape: str, storage: str) -> Result:
    import boto3
    from moto import mock_aws

    from functions import runtime
    from functions.aws import clients
    from functions.observability import logger
    from functions.settings import get_settings
    from functions.worker.handler import handler
    from infra.stack.event_source import SqsEventSource
    from infra.stack.lambda_context import LambdaContext
    from infra.template.reader import create_queues, create_table, table_definition
    from tests.faults.moto_speedups import faster_moto

    with mock_aws(), faster_moto():
        session = boto3.session.Session(region_name=REGION)
        lookup = session.client("dynamodb")
        meter = Meter(lookup)
        create_table(lookup, TABLE)
        meter.indexes = [
            (gsi["KeySchema"][0]["AttributeName"], gsi["KeySchema"][1]["AttributeName"],
             projection(gsi, table_definition()["KeySchema"]))
            for gsi in table_definition().get("GlobalSecondaryIndexes", [])
        ]  # fmt: skip
        urls = create_queues(session.client("sqs"), {})
        os.environ.update(
            HOPGRAPH_TABLE=TABLE,
            HOPGRAPH_STEP_QUEUE_URL=urls["StepQueue"],
            HOPGRAPH_DISPATCH=mode,
            HOPGRAPH_WORKER_FUNCTION="hopgraph-worker",
            HOPGRAPH_WS_ENDPOINT="https://ws.execute-api.us-east-1.amazonaws.com/prod",
            HOPGRAPH_TOOLKITS=SHAPE_TOOLKITS.get(
                shape, "engine.toolkits.basics,benchmarks.state_tools"
            ),
            HOPGRAPH_BUCKET=BUCKET,
            HOPGRAPH_STATE_LIMIT_BYTES=str(8 * 1024 * 1024),
        )
        session.client("s3").create_bucket(Bucket=BUCKET)
        get_settings.cache_clear()
        clients.reset()
        for service in ("dynamodb", "sqs", "lambda", "s3"):
            client = session.client(service)
            meter.attach(client)
            clients.override(service, client)
        runtime.install(None)
        svc = runtime.service()
        fresh = None
        if storage == "cold":
            from engine.deltas import StateCache

            def fresh() -> None:  # every invocation on a new worker: it knows no state yet
                svc.store._states = StateCache()  # type: ignore[attr-defined]

        doc, fields, (key, expected) = SHAPES[shape]
        graph = svc.create_graph(doc)[0]
        state = sized_state(state_kb, fields)
        meter.requests.clear()
        meter.wru = meter.rru = meter.index_wru = 0.0
        meter.sqs_billed = 0
        # Every line the functions log (Powertools JSON lines, EMF metric lines) is counted;
        # Lambda's own START/END/REPORT lines are INFO system logs, which the template's
        # SystemLogLevel WARN keeps out.
        logged = CountingStream()
        logger.registered_handler.setStream(logged)
        with contextlib.redirect_stdout(logged):
            run_ids = [svc.start_run(graph.graph_id, state)[0].run_id for _ in range(runs)]
            # A delivery that fails (a hop that came before its predecessor's commit) is
            # visible again at once, so that draining the queue finishes every run; its
            # requests are counted like any other.
            source = SqsEventSource(
                clients.client("sqs"), urls["StepQueue"], None, batch_size=10, failed_visibility=0
            )
            queue = QueueWatch(session.client("sqs"), urls["StepQueue"], f"{shape} {mode}", runs)
            invocations, billed_ms = drive(mode, meter, handler, source, LambdaContext, queue,
                                           fresh)  # fmt: skip
        runs_after = [svc.store.get_run(run_id) for run_id in run_ids]
        unfinished = [(r.status, r.error) for r in runs_after if r.status != "completed"]
        assert not unfinished, f"{shape} {mode}: runs did not complete: {unfinished[:3]}"
        assert all(r.state[key] == expected for r in runs_after), f"{shape}: a task is missing"
        steps = sum(r.steps for r in runs_after)
        tasks = sum(count_tasks(svc.store, run_id) for run_id in run_ids)
        runtime.install(None)
        aws_ms = meter.aws_seconds * 1000
        return Result(
            mode, state_kb, steps, meter, invocations, billed_ms, aws_ms, shape, runs, tasks,
            logged.bytes,
        )  # fmt: skip


class CountingStream(io.TextIOBase):
    """A text stream that keeps only how many bytes were written to it."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, text: str) -> int:
        self.bytes += len(text.encode())
        return len(text)


QUIET_LIMIT_S = 120.0
"""How long the step queue may hold messages none of which can be received (in flight or
delayed) before the benchmark gives up: a delivery that fails is visible again at once, so
only a stalled run, or a machine too loaded to finish an invocation, comes near it."""
PROGRESS_EVERY_S = 10.0


class QueueWatch:
    """The step queue as the benchmark waits on it: is anything left, received or not (on
    a client of its own, so that its requests are not counted), with a line on stderr every
    ``PROGRESS_EVERY_S`` of a long wait."""

    def __init__(self, sqs: Any, url: str, label: str, runs: int) -> None:
        self.sqs, self.url, self.label, self.runs = sqs, url, label, runs
        self.started = self.shown = time.monotonic()

    def left(self) -> dict[str, int]:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                 "ApproximateNumberOfMessagesDelayed"]  # fmt: skip
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=names)
        counts = [int(attributes["Attributes"][name]) for name in names]
        return dict(zip(("visible", "in flight", "delayed"), counts, strict=True))

    def progress(self, invocations: int, invokes: int | None = None) -> None:
        """``invokes``: in self-invoke mode, the invocations waiting (the queue is unused)."""
        now = time.monotonic()
        if now - self.shown >= PROGRESS_EVERY_S:
            self.shown = now
            left = f"queue {self.left()}" if invokes is None else f"{invokes} invokes waiting"
            print(
                f"{self.label}: {self.runs} runs, {invocations} invocations in "
                f"{now - self.started:.0f} s, {left}",
                file=sys.stderr,
                flush=True,
            )


def drain(source: Any, queue: QueueWatch, count: Any) -> None:
    """Deliver batches until the queue holds nothing at all: an empty receive is not the
    end while a message is in flight or delayed (it will be visible again); a queue that
    holds only such messages for ``QUIET_LIMIT_S`` is an error that says what is left."""
    quiet_since: float | None = None
    while True:
        if source.poll_once().received:
            quiet_since = None
            queue.progress(count())
            continue
        left = queue.left()
        if not any(left.values()):
            return
        now = time.monotonic()
        quiet_since = now if quiet_since is None else quiet_since
        if now - quiet_since > QUIET_LIMIT_S:
            raise RuntimeError(
                f"{queue.label}: for {QUIET_LIMIT_S:.0f} s no message could be received, "
                f"and the step queue still holds {left}"
            )
        queue.progress(count())
        time.sleep(0.05)


def drive(mode: str, meter: Meter, handler: Any, source: Any, context_type: Any,
          queue: QueueWatch, before_each: Any = None) -> tuple[int, float]:  # fmt: skip
    """Deliver every hop to the worker; returns (invocations, billed milliseconds).
    ``before_each``: called before every invocation."""
    invocations, billed = 0, 0.0

    def timed(event: dict[str, Any], context: Any) -> Any:
        nonlocal invocations, billed
        if before_each is not None:
            before_each()
        token = meter.in_handler.set(True)
        started = time.perf_counter()
        try:
            return handler(event, context)
        finally:
            billed += math.ceil((time.perf_counter() - started) * 1000)  # Lambda bills per ms
            invocations += 1
            meter.in_handler.reset(token)

    if mode == "sqs":
        source.handler = timed
        drain(source, queue, lambda: invocations)
    else:
        while meter.invokes:
            timed(meter.invokes.pop(0), context_type("hopgraph-worker", str(uuid.uuid4())))
            queue.progress(invocations, len(meter.invokes))
    return invocations, billed


# ---------------------------------------------------------------------------- report
def report(results: list[Result]) -> None:
    header = (
        f"{'dispatch':<9}{'state':>6}{'steps':>7}{'crit.path':>10}{'beside':>7}{'sqs req':>9}"
        f"{'WRU':>7}{'RRU':>7}{'lambda inv':>11}{'ms':>7}{'aws ms':>8}{'USD/M steps':>13}"
        f"{'SFN/this':>10}"
    )
    print(header)
    for r in (r for r in results if r.shape == "chain"):
        sqs = sum(n for k, n in r.meter.requests.items() if k.startswith("sqs."))
        print(
            f"{r.mode:<9}{r.state_kb:>4}KB{r.steps:>7}{r.critical_path:>10.2f}"
            f"{r.per_step(r.meter.beside_tool):>7.2f}{r.per_step(sqs):>9.2f}{r.per_step(r.meter.wru):>7.2f}{r.per_step(r.meter.rru):>7.2f}"
            f"{r.per_step(r.invocations):>11.2f}{r.per_step(r.billed_ms):>7.1f}"
            f"{r.per_step(r.aws_ms):>8.1f}"
            f"{r.usd_per_million:>13.2f}{PRICE_SFN_TRANSITION * 1e6 / r.usd_per_million:>9.1f}x"
        )
    print("\nper step: requests by operation; USD per million steps by service")
    for r in (r for r in results if r.shape == "chain"):
        ops = ", ".join(
            f"{k} {r.per_step(n):.2f}" for k, n in sorted(r.meter.requests.items()) if n
        )
        usd = ", ".join(f"{k} {v:.2f}" for k, v in r.usd_per_million_by_service().items())
        print(f"  {r.mode} {r.state_kb}KB: {ops}\n  {' ' * (len(r.mode) + 5)} {usd}")
    report_tasks(results)


def report_tasks(results: list[Result]) -> None:
    """Per task, the chain beside the parallel shapes, against the target for 1 KB states."""
    target = TASK_TARGET_USD_PER_MILLION
    print(f"\nper task (a chain's step, a branch, a map item); target <= {target:.2f} USD per "
          f"million tasks with 1 KB states")  # fmt: skip
    print(f"{'shape':<11}{'dispatch':<9}{'state':>6}{'runs':>6}{'tasks':>7}{'req/task':>10}"
          f"{'lambda inv':>11}{'USD/M tasks':>13}  target")  # fmt: skip
    for r in results:
        verdict = "-"
        if r.state_kb == 1 and r.shape in ALL_IN_TARGETS:
            verdict = "met" if r.usd_per_million_tasks <= target else "MISSED"
        print(f"{r.shape:<11}{r.mode:<9}{r.state_kb:>4}KB{r.runs:>6}{r.tasks:>7}"
              f"{r.requests / r.tasks:>10.2f}{r.invocations / r.tasks:>11.2f}"
              f"{r.usd_per_million_tasks:>13.2f}  {verdict}")  # fmt: skip
    print("\nper task of the parallel shapes: requests by operation; USD/M tasks by service")
    for r in (r for r in results if r.shape != "chain"):
        ops = ", ".join(f"{k} {n / r.tasks:.2f}" for k, n in sorted(r.meter.requests.items()) if n)
        usd = ", ".join(
            f"{k} {v * r.steps / r.tasks:.2f}" for k, v in r.usd_per_million_by_service().items()
        )
        print(f"  {r.shape} {r.mode}: {ops}\n  {' ' * (len(r.shape) + len(r.mode) + 2)} {usd}")


def report_all_in(results: list[Result], lone: list[Result]) -> None:
    """Today's figure (the requests above) beside the all-in one, per task, 1 KB states."""
    print(
        "\nall-in, USD per million tasks (1 KB states): requests (today's figure), then what "
        "they left out\n(index writes; log ingestion at INFO, by the bytes measured; the "
        "HTTP API request that starts a run;\nnot counted: X-Ray traces with Tracing: Active, "
        "WebSocket messages to subscribers, idle SQS polling)"
    )
    print(f"{'in flight':>9} {'shape':<10}{'dispatch':<9}{'requests':>9}{'+index':>8}"
          f"{'+logs':>7}{'+api':>7}{'all-in':>8}{'log B/task':>11}  target")  # fmt: skip
    for r in results + lone:
        if r.state_kb != 1 or r.shape not in ALL_IN_TARGETS:
            continue
        extra = {k: r.per_task(v) for k, v in r.usd_per_million_uncounted().items()}
        all_in = r.per_task(r.usd_per_million_all_in)
        target = ALL_IN_TARGETS[r.shape]
        verdict = "-" if r in lone else ("met" if all_in <= target else "MISSED")
        print(
            f"{r.runs:>9} {r.shape:<10}{r.mode:<9}{r.usd_per_million_tasks:>9.2f}"
            f"{extra['index writes']:>8.2f}{extra['log ingestion']:>7.2f}"
            f"{extra['api requests']:>7.2f}{all_in:>8.2f}{r.log_bytes / r.tasks:>11.0f}"
            f"  {verdict} (<= {target:.2f})"
        )
    chains = {r.mode: r for r in lone if r.shape == "chain"}
    if len(chains) == 2:
        cheaper = min(chains.values(), key=lambda r: r.usd_per_million_all_in)
        print(
            "\nat 1 run in flight (each SQS batch carries one hop) a chain step costs "
            + ", ".join(f"{m} {r.usd_per_million_all_in:.2f}" for m, r in chains.items())
            + f" USD per million all-in: a low-traffic deployment should choose "
            f"Dispatch={cheaper.mode}"
        )


def report_agent(runs: int) -> None:
    """An agent's step (a model call, or one tool call) in requests and USD per million, the
    model's own price apart: its tokens are totalled per run by GET /runs/{id}."""
    with contextlib.redirect_stdout(io.StringIO()):
        results = [run_scenario(mode, 1, runs, "agent") for mode in ("sqs", "lambda")]
    report_tasks(results)
    calls = len(AGENT["nodes"]["researcher"]["agent"]["responses"])
    supersteps = results[0].steps // runs
    print(f"\nper run of the research agent: {calls} model calls in {supersteps} supersteps; "
          "the model's price comes on top, per token (HOPGRAPH_MODEL_PRICES)")  # fmt: skip
    for r in results:
        print(f"agent_usd_per_million_tasks {r.mode} {r.usd_per_million_tasks:.2f} "
              f"requests_per_task {r.requests / r.tasks:.2f}")  # fmt: skip


STATE_TARGET_50KB = 3.00
"""Target for a 50 KB state of which each step changes about 1 KB, USD per million steps."""


def state_rows(runs: int) -> list[Result]:
    """The state rows: the 1 KB chain stored lean and stored whole (as before lean steps), the
    50 KB state changing 1 KB a step (lean, lean on cold workers, whole), the growing
    message list (lean, whole), and the 20-step chain on a 2 MB state (its large value in
    S3), with SQS dispatch."""
    return [
        run_scenario("sqs", 1, runs, "chain", "lean"),
        run_scenario("sqs", 1, runs, "chain", "full"),
        run_scenario("sqs", 50, runs, "churn", "lean"),
        run_scenario("sqs", 50, runs, "churn", "cold"),
        run_scenario("sqs", 50, runs, "churn", "full"),
        run_scenario("sqs", 1, runs, "messages", "lean"),
        run_scenario("sqs", 1, runs, "messages", "full"),
        run_scenario("sqs", 2048, runs, "chain", "lean"),
    ]


def report_states(rows: list[Result]) -> None:
    """Per step: what a state's size and churn cost, lean beside whole."""
    print(
        f"\nstate rows, per step (SQS dispatch; chain: 20 steps of a 1 KB state; churn: "
        f"{STATE_STEPS} steps of a 50 KB state,\neach changing ~1 KB; messages: "
        f"{STATE_STEPS} steps each adding a 2 KB message; the 2 MB chain's value in S3).\n"
        f"storage: lean (deltas, snapshots every {_every()} supersteps), cold (lean, every "
        "invocation on a new worker:\neach read from the nearest snapshot), full (the whole "
        "state every step, as before)"
    )
    print(f"{'row':<10}{'storage':<9}{'state':>6}{'steps':>7}{'crit.path':>10}{'WRU':>8}"
          f"{'RRU':>8}{'USD/M steps':>13}  target")  # fmt: skip
    for r in rows:
        verdict = "-"
        if r.shape == "churn" and r.storage == "lean":
            verdict = f"{'met' if r.usd_per_million <= STATE_TARGET_50KB else 'MISSED'} " \
                      f"(<= {STATE_TARGET_50KB:.2f})"  # fmt: skip
        if r.shape == "chain" and r.storage == "lean":
            whole = next(x for x in rows if x.shape == "chain" and x.storage == "full")
            verdict = f"{'met' if r.usd_per_million <= whole.usd_per_million * 1.02 else 'MISSED'}"\
                      f" (<= full: {whole.usd_per_million:.2f})"  # fmt: skip
        print(f"{r.shape:<10}{r.storage:<9}{r.state_kb:>4}KB{r.steps:>7}{r.critical_path:>10.2f}"
              f"{r.per_step(r.meter.wru):>8.2f}{r.per_step(r.meter.rru):>8.2f}"
              f"{r.usd_per_million:>13.2f}  {verdict}")  # fmt: skip


def _every() -> int:
    from engine import deltas

    return deltas.SNAPSHOT_EVERY


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50, help="runs in flight per scenario")
    parser.add_argument("--map-runs", type=int, default=5, help="runs of the map of 100")
    parser.add_argument("--agent", action="store_true", help="only the research agent's steps")
    parser.add_argument("--state-runs", type=int, default=10, help="runs of each state row")
    parser.add_argument(
        "--snapshot-every", type=int, default=None,
        help="K of the lean rows (engine/deltas.py SNAPSHOT_EVERY): to compare choices",
    )  # fmt: skip
    parser.add_argument(
        "--only-states", action="store_true",
        help="only the state rows (a quicker run); the last line then names the 1 KB chain "
        "of the state rows",
    )  # fmt: skip
    args = parser.parse_args()
    if args.snapshot_every:
        from engine import deltas

        deltas.SNAPSHOT_EVERY = args.snapshot_every
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "POWERTOOLS_LOG_LEVEL": "INFO",  # the template's default: its log bytes are priced
        "POWERTOOLS_METRICS_NAMESPACE": "HopgraphBench",
    }.items():
        os.environ.setdefault(name, value)
    if args.agent:
        report_agent(args.runs)
        return
    results: list[Result] = []
    lone: list[Result] = []
    # The handlers print their EMF metric lines to stdout, as on Lambda; keep them out of the table.
    with contextlib.redirect_stdout(io.StringIO()):
        if not args.only_states:
            results = [
                run_scenario(mode, kb, args.runs) for mode in ("sqs", "lambda") for kb in (1, 50)
            ]
            results += [
                run_scenario(mode, 1, runs, shape)
                for shape, runs in (
                    ("fanout-10", args.runs), ("map-100", args.map_runs), ("retry-3", args.runs)
                )
                for mode in ("sqs", "lambda")
            ]  # fmt: skip
            lone = [
                run_scenario(mode, 1, 1, shape)
                for shape in ("chain", "fanout-10", "map-100")
                for mode in ("sqs", "lambda")
            ]
        states = state_rows(args.state_runs)
    if results:
        report(results)
        report_all_in(results, lone)
    report_states(states)
    default = results[0] if results else states[0]
    churn = next(r for r in states if r.shape == "churn" and r.storage == "lean")
    print(
        f"usd_per_million_steps {default.usd_per_million:.2f} "
        f"critical_path_requests {default.critical_path:g} "
        f"usd_per_million_steps_50kb {churn.usd_per_million:.2f}"
    )


if __name__ == "__main__":
    main()
