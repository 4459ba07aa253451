"""The scenarios: runs of one graph shape, all in flight at once, through the real worker on
moto, and what they cost (:class:`Result`)."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
import os
import random
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.cost.meter import (
    BUCKET,
    PRICE_HTTP_API_REQUEST,
    PRICE_LAMBDA_GB_S,
    PRICE_LAMBDA_REQUEST,
    PRICE_LOGS_GB,
    PRICE_RRU,
    PRICE_S3_GET,
    PRICE_S3_PUT,
    PRICE_SQS_REQUEST,
    PRICE_WRU,
    REGION,
    TABLE,
    Meter,
    projection,
)


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
AGENT = json.loads((Path(__file__).resolve().parents[2] / "examples" / "research_agent.json")
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


@dataclass
class Deployment:
    """The worker's composition on moto, every AWS client metered (:func:`deployment`)."""

    session: Any
    meter: Meter
    service: Any
    urls: dict[str, str]


@contextlib.contextmanager
def deployment(mode: str, toolkits: str) -> Iterator[Deployment]:
    """The deployment's table, queues and bucket on moto, and its run service with
    ``mode`` dispatch and ``toolkits``, every AWS client metered."""
    import boto3
    from moto import mock_aws

    from functions import runtime
    from functions.aws import clients
    from functions.settings import get_settings
    from infra.moto.fidelity import serialize_dynamodb_writes, serialize_sqs
    from infra.template.reader import create_queues, create_table, table_definition
    from tests.faults.moto_speedups import faster_moto

    # The workers' threads call moto at once. moto is not safe for that: a cancelled
    # transaction puts back its copy of the table, undoing the writes other threads made
    # meanwhile (a run's end lost beside its committed last step). DynamoDB's and SQS's
    # operations run one at a time, as on the local stack and in the fault suite.
    lock = threading.RLock()
    with mock_aws(), faster_moto(), serialize_dynamodb_writes(lock), serialize_sqs(lock):
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
            HOPGRAPH_TOOLKITS=toolkits,
            HOPGRAPH_BUCKET=BUCKET,
            HOPGRAPH_STATE_LIMIT_BYTES=str(8 * 1024 * 1024),
            HOPGRAPH_RETENTION_DAYS="30",  # the template's default: log items carry a TTL
        )
        session.client("s3").create_bucket(Bucket=BUCKET)
        get_settings.cache_clear()
        clients.reset()
        for service in ("dynamodb", "sqs", "lambda", "s3"):
            client = session.client(service)
            meter.attach(client)
            clients.override(service, client)
        runtime.install(None)
        try:
            yield Deployment(session, meter, runtime.service(), urls)
        finally:
            runtime.install(None)


def _run_scenario(mode: str, state_kb: int, runs: int, shape: str, storage: str) -> Result:
    toolkits = SHAPE_TOOLKITS.get(shape, "engine.toolkits.basics,benchmarks.state_tools")
    with deployment(mode, toolkits) as deployed:
        return _measured(deployed, mode, state_kb, runs, shape, storage)


def _measured(
    deployed: Deployment, mode: str, state_kb: int, runs: int, shape: str, storage: str
) -> Result:  # fmt: skip
    from functions.aws import clients
    from functions.aws.dynamodb_store import DynamoRunStore
    from functions.aws.s3_blobs import S3BlobStore
    from functions.observability import logger
    from functions.worker.handler import handler
    from infra.stack.event_source import SqsEventSource
    from infra.stack.lambda_context import LambdaContext

    session, meter, svc, urls = deployed.session, deployed.meter, deployed.service, deployed.urls
    lookup = meter.lookup
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
    # The checks below read through a client without the meter's hooks: what the
    # benchmark reads to check the runs is not what the runs cost.
    values = S3BlobStore(BUCKET, session.client("s3"))
    unmetered = DynamoRunStore(TABLE, lookup, blob_store=values)
    runs_after = [unmetered.get_run(run_id) for run_id in run_ids]
    unfinished = [(r.status, r.error) for r in runs_after if r.status != "completed"]
    assert not unfinished, f"{shape} {mode}: runs did not complete: {unfinished[:3]}"
    assert all(r.state[key] == expected for r in runs_after), f"{shape}: a task is missing"
    steps = sum(r.steps for r in runs_after)
    tasks = sum(count_tasks(unmetered, run_id) for run_id in run_ids)
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
