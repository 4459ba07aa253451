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

The benchmark's own checks of its runs (their end states and tasks) read through clients
without the hooks: they are not counted.

The critical path of a step is the serial chain of requests between the commit of step n-1
and the commit of step n of the same run, counted per run: with SQS the send, the receive,
the slot check's one read (the step before and the run's subscribers in one query, made
before the tool starts, so that a superstep cancelled meanwhile starts nothing) and the
commit; self-invoking, the invoke, the read and the commit. Deletes are off it. The last
line is ``usd_per_million_steps X critical_path_requests N`` for SQS dispatch with a 1 KB
state.

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
import contextlib
import io
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: make benchmarks.cost and tests importable

from benchmarks.cost.meter import REGION  # noqa: E402
from benchmarks.cost.report_agent import report_agent  # noqa: E402
from benchmarks.cost.report_paused import paused_row, report_paused  # noqa: E402
from benchmarks.cost.report_states import report_states, state_rows  # noqa: E402
from benchmarks.cost.report_tasks import report, report_all_in  # noqa: E402
from benchmarks.cost.scenarios import Result, run_scenario  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50, help="runs in flight per scenario")
    parser.add_argument("--map-runs", type=int, default=5, help="runs of the map of 100")
    parser.add_argument("--agent", action="store_true", help="only the research agent's steps")
    parser.add_argument(
        "--paused", action="store_true", help="only the paused runs' rows (a quicker run)"
    )
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
        "POWERTOOLS_SERVICE_NAME": "hopgraph",  # template.yaml's: on every log line
    }.items():
        os.environ.setdefault(name, value)
    if args.agent:
        report_agent(args.runs)
        return
    paused = [paused_row(mode, args.runs) for mode in ("sqs", "lambda")]
    if args.paused:
        report_paused(paused)
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
    # The reports, one module each under benchmarks/cost/ (report_*.py): a new row or table
    # gets its module there, its scenarios above (run_scenario) and its report below.
    if results:
        report(results)
        report_all_in(results, lone)
    report_states(states)
    report_paused(paused)
    default = results[0] if results else states[0]
    churn = next(r for r in states if r.shape == "churn" and r.storage == "lean")
    print(
        f"usd_per_million_steps {default.usd_per_million:.2f} "
        f"critical_path_requests {default.critical_path:g} "
        f"usd_per_million_steps_50kb {churn.usd_per_million:.2f}"
    )


if __name__ == "__main__":
    main()
