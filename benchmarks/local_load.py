"""Load on the local stack: many runs of a chain of ``increment`` steps, started at once.

Starts ``hopgraph dev`` as a subprocess on free ports (its own interpreter: the load
generator does not share its GIL), creates a chain of ``--steps`` ``increment`` nodes
(engine.toolkits.basics), starts ``--runs`` runs over HTTP with at most ``--concurrency``
requests in flight, and polls ``GET /runs?status=running&limit=1`` every two seconds until
no run is left running or ``--deadline`` passes. It then reads every run and step from the
stack's table (one Scan) and prints:

- runs/s and steps/s: completed runs, and committed steps (of all runs), over the window
  from the first start request to the last step's commit;
- hop latency p50/p99: for consecutive steps i-1, i of one run,
  ``(started_at[i] + duration_ms[i]) - (started_at[i-1] + duration_ms[i-1])``, from the end
  of one step's tool to the end of the next one's. A step commits right after its tool
  ends, so this is commit to commit: the commit write, the event publish, the dispatch, the
  wait in the queue, the poll, and the next tool (``increment``: microseconds);
- start latency p50/p99: from a run's creation to its first step's start;
- lost runs: runs asked for that did not complete by the deadline (failed, still running,
  or never started), plus completed runs whose log has a gap or a repeat (target 0);
- the stack's CPU time per step (all its processes), which a busy machine does not skew
  the way it skews rates;
- the ratio of the stack's steps/s to engine.runner.InProcessRunner's on the same graph,
  measured in this process in the same invocation.

Run: ``.venv/bin/python benchmarks/local_load.py [--runs 1000] [--steps 10]``. The last line
is exactly ``lost N steps_per_s S``; the exit status is 1 if a run was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the stack launcher lives with the end-to-end tests

from engine.ports import RunRecord, StepRecord  # noqa: E402
from tests.e2e.stack import StackFailed, StackProcess, launch  # noqa: E402

POLL_INTERVAL_S = 2.0


def chain_graph(steps: int) -> dict[str, Any]:
    """``steps`` increment nodes, s0 -> s1 -> ... -> END."""
    names = [f"s{i}" for i in range(steps)]
    return {
        "name": f"chain_{steps}",
        "entry": names[0],
        "max_steps": steps + 1,
        "nodes": {name: {"tool": "increment"} for name in names},
        "edges": {a: b for a, b in zip(names, [*names[1:], "END"], strict=True)},
    }


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# -- the load --------------------------------------------------------------------------------
async def start_runs(
    client: httpx.AsyncClient, graph_id: str, runs: int, concurrency: int
) -> tuple[list[str], list[str]]:
    """Start ``runs`` runs; (run ids, errors of the starts that failed)."""
    gate = asyncio.Semaphore(concurrency)

    async def start_one(i: int) -> str:
        async with gate:
            response = await client.post(
                "/runs", json={"graph_id": graph_id, "input": {"count": 0, "i": i}}
            )
        if response.status_code != 202:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
        return str(response.json()["run_id"])

    results = await asyncio.gather(*(start_one(i) for i in range(runs)), return_exceptions=True)
    ids = [r for r in results if isinstance(r, str)]
    errors = [str(r) for r in results if isinstance(r, BaseException)]
    return ids, errors


async def any_running(client: httpx.AsyncClient) -> bool:
    """One page of one run: moto answers an index query by scanning the whole table, so
    counting every running run each poll would load the stack more than the runs do."""
    for attempt in range(3):
        try:
            response = await client.get("/runs", params={"status": "running", "limit": 1})
            return bool(response.raise_for_status().json()["items"])
        except httpx.TransportError:  # e.g. a kept-alive connection the server just closed
            if attempt == 2:
                raise
            await asyncio.sleep(1)
    raise AssertionError("unreachable")


async def wait_for_runs(client: httpx.AsyncClient, deadline: float) -> None:
    """Poll until no run is running or the deadline passes."""
    began = last_report = time.monotonic()
    while time.monotonic() < deadline and await any_running(client):
        if time.monotonic() - last_report > 30:
            print(f"  ... runs still running after {time.monotonic() - began:.0f} s", flush=True)
            last_report = time.monotonic()
        await asyncio.sleep(POLL_INTERVAL_S)


@dataclass
class Run:
    header: RunRecord
    log: list[StepRecord]


def read_table(stack: StackProcess) -> dict[str, Run]:
    """Every run and its steps, from one Scan of the stack's table, decoded by the store's
    own item functions. Reading 1,000 runs through the API would cost 2,000 queries, each a
    full-table scan in moto: minutes of the stack's time for figures the table already has
    (and at full precision: the API rounds times to milliseconds)."""
    import boto3

    from functions.aws import dynamodb_items as items

    dynamodb = boto3.client(
        "dynamodb", endpoint_url=stack.moto_endpoint, region_name="us-east-1",
        aws_access_key_id="local", aws_secret_access_key="local",
    )  # fmt: skip
    (table,) = dynamodb.list_tables()["TableNames"]
    runs: dict[str, Run] = {}
    steps: list[StepRecord] = []
    for page in dynamodb.get_paginator("scan").paginate(TableName=table):
        for item in page["Items"]:
            sk = item["SK"]["S"]
            if sk == "RUN":
                run = items.run_from_item(item)
                runs[run.run_id] = Run(run, [])
            elif sk.startswith(items.STEP_PREFIX):
                steps.append(items.step_from_item(item))
    for step in steps:
        runs[step.run_id].log.append(step)
    for run in runs.values():
        run.log.sort(key=lambda s: s.seq)
    return runs


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) of ``pid`` and its descendants so far; None off Linux."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        child = int(stat.parent.name)
        parents[child] = int(fields[1])
        cpu[child] = (int(fields[11]) + int(fields[12])) / tick
    if pid not in cpu:
        return None
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, of in parents.items():
            if of == parent and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(cpu[p] for p in tree)


# -- the figures -----------------------------------------------------------------------------
@dataclass
class Figures:
    started: int
    start_errors: int
    completed: int
    failed: int
    stuck: int
    incomplete_logs: int
    intact: int
    """Completed runs whose log is whole."""
    steps: int
    window_s: float
    hop_ms: list[float]
    start_ms: list[float]
    run_s: list[float]
    cpu_s: float | None

    @property
    def lost(self) -> int:
        """Runs asked for that did not complete in time, or whose log is broken."""
        return self.started + self.start_errors - self.intact

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.window_s if self.window_s > 0 else 0.0


def figures(runs: list[Run], asked: int, t0: float, errors: int, cpu_s: float | None) -> Figures:
    """``runs``: those the table holds of the ``asked`` runs started without an error.

    Steps and hops count every committed step, of unfinished runs too: an overloaded stack
    that ends few runs still shows what it got through."""
    hop_ms: list[float] = []
    start_ms: list[float] = []
    run_s: list[float] = []
    last_commit = t0
    steps = broken = intact = 0
    for run in runs:
        header, log = run.header, run.log
        ended = header.status == "completed"
        if [s.seq for s in log] != list(range(len(log))) or (
            ended and log[-1].run_status != "completed"
        ):
            broken += 1  # a gap, a repeat, or an end the header does not agree with
        elif ended:
            intact += 1
        if ended:
            run_s.append(header.updated_at - header.created_at)
        if not log:
            continue
        steps += len(log)
        done = [s.started_at + s.duration_ms / 1000 for s in log]
        last_commit = max(last_commit, done[-1])
        hop_ms += [(b - a) * 1000 for a, b in itertools.pairwise(done)]
        start_ms.append((log[0].started_at - header.created_at) * 1000)
    statuses = [run.header.status for run in runs]
    return Figures(
        started=asked,
        start_errors=errors,
        completed=statuses.count("completed"),
        failed=statuses.count("failed") + statuses.count("cancelled"),
        stuck=statuses.count("running"),
        incomplete_logs=broken,
        intact=intact,
        steps=steps,
        window_s=last_commit - t0,
        hop_ms=hop_ms,
        start_ms=start_ms,
        run_s=run_s,
        cpu_s=cpu_s,
    )


def in_process_steps_per_s(graph_doc: dict[str, Any], runs: int) -> float:
    """The reference: the same graph run ``runs`` times by InProcessRunner, which records
    each step in a MemoryRunStore as the stack records each in its table."""
    from engine.memory import MemoryRunStore
    from engine.runner import InProcessRunner
    from engine.tools import load_toolkits
    from engine.validation import build_graph

    tools = load_toolkits(["engine.toolkits.basics"])
    graph = build_graph(graph_doc, tools.names())
    runner = InProcessRunner(tools, store=MemoryRunStore())
    began = time.perf_counter()
    steps = sum(runner.run(graph, {"count": 0, "i": i}).steps for i in range(runs))
    return steps / (time.perf_counter() - began)


def _p(values: list[float], unit: str, digits: int = 1) -> str:
    p50, p99 = percentile(values, 50), percentile(values, 99)
    return f"p50 {p50:.{digits}f} {unit}  p99 {p99:.{digits}f} {unit}"


def report(f: Figures, reference: float, deadline_s: float) -> None:
    print(f"runs: started {f.started}, start errors {f.start_errors}, completed {f.completed}, "
          f"failed {f.failed}, still running after {deadline_s:.0f} s {f.stuck}, "
          f"with a broken log {f.incomplete_logs}")  # fmt: skip
    print(f"window: first start request to the last commit {f.window_s:.2f} s, {f.steps} steps")
    print(f"runs/s {f.completed / f.window_s:.2f}  steps/s {f.steps_per_s:.1f}")
    print(f"hop latency (tool end to the next tool end in one run, i.e. commit to commit: "
          f"commit, publish, dispatch, queue wait, poll, next tool), {len(f.hop_ms)} hops: "
          f"{_p(f.hop_ms, 'ms')}")  # fmt: skip
    print(f"start latency (run created to its first step started): {_p(f.start_ms, 'ms')}")
    print(f"run duration (created to terminal commit): {_p(f.run_s, 's', 2)}")
    if f.cpu_s is not None and f.steps:
        print(f"stack CPU (all its processes, first start to the last run's end): "
              f"{f.cpu_s:.1f} s, {f.cpu_s / f.steps * 1000:.1f} ms per step")  # fmt: skip
    ratio = f.steps_per_s / reference if reference else float("nan")
    print(f"in-process runner: {reference:.0f} steps/s; local stack / in-process = {ratio:.5f}")


async def load(stack: StackProcess, args: argparse.Namespace) -> tuple[float, list[str], int]:
    """Create the graph, start the runs, wait for them: (t0, run ids, start errors)."""
    # Idle connections are dropped before uvicorn's keep-alive timeout (5 s) can close them.
    limits = httpx.Limits(max_connections=args.concurrency, keepalive_expiry=1.0)
    async with httpx.AsyncClient(base_url=stack.api, timeout=60.0, limits=limits) as client:
        graph = chain_graph(args.steps)
        created = (await client.post("/graphs", json=graph)).raise_for_status().json()
        t0 = time.time()
        ids, errors = await start_runs(client, created["graph_id"], args.runs, args.concurrency)
        print(f"started {len(ids)} runs in {time.time() - t0:.2f} s, {len(errors)} errors",
              flush=True)  # fmt: skip
        for error in errors[:5]:
            print(f"  start error: {error}")
        await wait_for_runs(client, time.monotonic() + args.deadline)
    return t0, ids, len(errors)


def measure(args: argparse.Namespace) -> Figures:
    stack = launch(args.dispatch)
    try:
        cpu_before = tree_cpu_seconds(stack.process.pid)
        t0, ids, errors = asyncio.run(load(stack, args))
        cpu_after = tree_cpu_seconds(stack.process.pid)
        table = read_table(stack)
    finally:
        try:
            code = stack.stop(timeout=30)
        except StackFailed as exc:  # the figures stand; the stop is reported, not hidden
            code, table = -1, locals().get("table", {})
            print(f"warning: {str(exc).splitlines()[0]}", file=sys.stderr)
        if code != 0 or "Traceback" in stack.stderr:
            print(f"warning: the stack exited with {code}; its stderr:\n{stack.stderr[-3000:]}",
                  file=sys.stderr)  # fmt: skip
    cpu = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
    started = set(ids)
    ours = [r for r in table.values() if r.header.run_id in started]
    return figures(ours, len(started), t0, errors, cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=32, help="HTTP requests in flight")
    parser.add_argument("--deadline", type=float, default=1800.0, help="seconds for all runs")
    parser.add_argument("--dispatch", choices=["sqs", "lambda"], default="sqs")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.steps < 1:
        parser.error("--runs and --steps must be at least 1")

    print(f"local stack, {args.dispatch} dispatch: {args.runs} runs of {args.steps} steps")
    result = measure(args)
    reference = in_process_steps_per_s(chain_graph(args.steps), min(args.runs, 1000))
    report(result, reference, args.deadline)
    print(f"lost {result.lost} steps_per_s {result.steps_per_s:.1f}")
    return 1 if result.lost else 0


if __name__ == "__main__":
    sys.exit(main())
