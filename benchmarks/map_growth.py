"""Whether a wide map's cost per item grows with the items already committed, on the local stack.

One map of n items of ``emit`` (benchmarks/map_start.py's graph: microseconds of tool time) is
started on a fresh local stack, and every ``--every`` seconds, until it completes, one line
says how many of its items have committed (the superstep's task count, read with one GetItem
from the stack's moto), and, per item committed since the line before, the CPU time of the
moto process and of the stack's own process (its handlers, pollers and API). Anything O(n)
per item (a read that walks every task committed so far, a rewrite of every item) shows as
a CPU time per item that climbs from line to line; a flat one is a map whose time grows with
its width, not with its square. CPU time, not wall time: other work on the machine slows the
rate, but adds little to the CPU each item takes (the load average is printed beside).

Printed: one line per interval; the last line is ``map_growth_moto_ms_per_item A B``: the
moto CPU per item, the median of the first three intervals and of the last three before the
one that saw every item committed (the superstep's close begins there).

Run: ``.venv/bin/python benchmarks/map_growth.py [--items 20000] [--every 20]`` (``--items``
above 655: a narrower map of 100 items in flight keeps no task count to read).
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

import boto3
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the stack launcher lives with the end-to-end tests

from benchmarks.map_start import MAP, docs  # noqa: E402
from engine.protocol import COUNTED_FAN_IN_ABOVE, MAP_WINDOW  # noqa: E402
from tests.e2e.stack import StackFailed, launch  # noqa: E402

TABLE = "hopgraph-local-table"
DEADLINE_S = 7_200.0


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def moto_pid(stack_pid: int) -> int:
    """The stack's moto process (infra/moto/process.py), a child of the stack's process."""
    found = subprocess.run(["pgrep", "-P", str(stack_pid)], capture_output=True, text=True)
    for pid in map(int, found.stdout.split()):
        if "infra.moto.process" in Path(f"/proc/{pid}/cmdline").read_text():
            return pid
    raise RuntimeError("no moto process under the stack")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--every", type=float, default=20.0, help="seconds between lines")
    args = parser.parse_args(argv)
    narrowest = COUNTED_FAN_IN_ABOVE**2 // MAP_WINDOW  # engine.protocol: _counted_plan
    if args.items <= narrowest:
        parser.error(f"--items above {narrowest}: a narrower map keeps no task count")
    stack = launch()
    samples: list[tuple[int, float]] = []  # (items committed, moto CPU s) at each line
    try:
        moto = moto_pid(stack.process.pid)
        dynamodb = boto3.client(
            "dynamodb", endpoint_url=f"http://127.0.0.1:{stack.moto_port}",
            region_name="us-east-1", aws_access_key_id="local", aws_secret_access_key="local",
        )  # fmt: skip
        with httpx.Client(base_url=stack.api, timeout=120.0) as client:
            graph_id = client.post("/graphs", json=MAP).raise_for_status().json()["graph_id"]
            started = time.perf_counter()
            reply = client.post("/runs", json={"graph_id": graph_id, "input": docs(args.items)})
            run_id = reply.raise_for_status().json()["run_id"]
            count_key = {"PK": {"S": f"RUN#{run_id}"}, "SK": {"S": "FANIN#000000"}}
            last = (started, 0, cpu_seconds(moto), cpu_seconds(stack.process.pid))
            samples.append((0, last[2]))
            status = "running"
            while status == "running":
                time.sleep(args.every)
                status = client.get(f"/runs/{run_id}").raise_for_status().json()["status"]
                found = dynamodb.get_item(TableName=TABLE, Key=count_key).get("Item", {})
                done = int(found.get("done", {}).get("N", "0"))
                now = (time.perf_counter(), done, cpu_seconds(moto), cpu_seconds(stack.process.pid))
                items = max(now[1] - last[1], 1)
                load = Path("/proc/loadavg").read_text().split()[0]
                print(
                    f"{now[0] - started:7.1f} s  items {done:>7,}  "
                    f"{(now[1] - last[1]) / (now[0] - last[0]):6.1f} items/s  "
                    f"moto {(now[2] - last[2]) * 1000 / items:6.2f} ms/item  "
                    f"stack {(now[3] - last[3]) * 1000 / items:6.2f} ms/item  load {load}"
                    + ("" if status == "running" else f"  ({status}: the close included)"),
                    flush=True,
                )
                samples.append((done, now[2]))
                last = now
                if now[0] - started > DEADLINE_S:
                    raise RuntimeError(f"run {run_id} still running after {DEADLINE_S:.0f} s")
            if status != "completed":
                raise RuntimeError(f"run {run_id} ended {status}")
    finally:
        try:
            stack.stop(timeout=60)
        except StackFailed as exc:  # the figures stand; the failed stop is reported
            print(f"warning: {str(exc).splitlines()[0]}", file=sys.stderr)
    # per interval, before the one that saw every item committed (the close begins there)
    per_item = [
        (b[1] - a[1]) * 1000 / (b[0] - a[0])
        for a, b in itertools.pairwise(samples)
        if a[0] < b[0] < args.items
    ]
    if len(per_item) < 2:
        raise RuntimeError("too few lines to compare: a larger --items, or a smaller --every")
    ends = per_item[:3], per_item[-3:]
    print(f"map_growth_moto_ms_per_item {median(ends[0]):.2f} {median(ends[1]):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
