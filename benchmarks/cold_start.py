"""Cold-start import cost of each Lambda handler module against a bare baseline.

A Lambda cold start imports the handler module in a fresh interpreter. Each measurement
here is one fresh interpreter (a subprocess) timing ``import <module>`` with
``time.perf_counter`` around it, so interpreter start-up, the same for every module, is left
out. Handlers are compared with what any function of their kind pays anyway:

- ``functions.api.handler`` against ``import fastapi, boto3`` (target <= 1.3x);
- the worker, starter and WebSocket handlers against ``import boto3`` (target <= 1.5x);
- the WebSocket ``$connect`` authorizer, in front of every new connection, against the same
  ``import boto3`` a Python function of its kind pays for (target <= 1.5x), though it
  imports PyJWT and never boto3.

Handler and baseline are measured alternately (A, B, A, B, ...), so a machine that gets
busier during the run slows both alike; the figure is the median of ``--repeat`` runs after
one discarded warm-up each (which also writes the bytecode caches). The environment is a
deployment's (``HOPGRAPH_*``, ``POWERTOOLS_*``, a region), with no credentials and no
endpoint: importing a handler must not need them.

Not measured: the Lambda runtime compiles the repo's own modules at every cold start, since
the build ships no ``.pyc`` for functions/ and engine/ (/var/task is read-only), whereas a
laptop reuses its bytecode caches.

Run: ``.venv/bin/python benchmarks/cold_start.py [--repeat N]``. The last line is
``worst_ratio R`` (the largest handler/baseline ratio); the exit status is 1 if a target is
missed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TIMER = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"

ENVIRONMENT = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_LAMBDA_FUNCTION_NAME": "hopgraph-cold-start",
    "HOPGRAPH_TABLE": "hopgraph",
    "HOPGRAPH_STEP_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/hopgraph-steps",
    "HOPGRAPH_WS_ENDPOINT": "https://abc.execute-api.us-east-1.amazonaws.com/prod",
    "POWERTOOLS_SERVICE_NAME": "hopgraph",
    "POWERTOOLS_METRICS_NAMESPACE": "Hopgraph",
    "POWERTOOLS_TRACE_DISABLED": "true",
}


@dataclass(frozen=True)
class Target:
    module: str
    baseline: str
    limit: float


TARGETS = [
    Target("functions.api.handler", "fastapi, boto3", 1.3),
    Target("functions.worker.handler", "boto3", 1.5),
    Target("functions.starter.handler", "boto3", 1.5),
    Target("functions.websocket.handler", "boto3", 1.5),
    Target("functions.auth.authorizer", "boto3", 1.5),
]


def _clean_environment() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "SYSTEMROOT", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(ENVIRONMENT)
    env["PYTHONPATH"] = str(ROOT)
    return env


def import_seconds(statement: str, env: dict[str, str]) -> float:
    """Seconds ``import <statement>`` takes in a fresh interpreter."""
    result = subprocess.run(
        [sys.executable, "-c", TIMER.format(module=statement)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"import {statement} failed:\n{result.stderr.strip()}")
    return float(result.stdout.strip().splitlines()[-1])


def measure(target: Target, repeat: int, env: dict[str, str]) -> tuple[float, float]:
    """Median import seconds of (handler, baseline), measured alternately."""
    import_seconds(target.module, env)  # warm-up: bytecode caches, file system cache
    import_seconds(target.baseline, env)
    handler: list[float] = []
    baseline: list[float] = []
    for _ in range(repeat):
        handler.append(import_seconds(target.module, env))
        baseline.append(import_seconds(target.baseline, env))
    return statistics.median(handler), statistics.median(baseline)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs per module (median)")
    args = parser.parse_args(argv)
    env = _clean_environment()

    print(f"{'handler':<30} {'baseline':<22} {'ms':>7} {'base ms':>8} {'ratio':>6} {'target':>7}")
    ratios: list[float] = []
    missed = False
    for target in TARGETS:
        if importlib.util.find_spec(target.module) is None:
            print(f"{target.module:<30} skipped: the module does not exist yet")
            continue
        handler, baseline = measure(target, args.repeat, env)
        ratio = handler / baseline
        ratios.append(ratio)
        verdict = "ok" if ratio <= target.limit else "MISSED"
        missed = missed or ratio > target.limit
        print(
            f"{target.module:<30} {'import ' + target.baseline:<22} {handler * 1000:>7.1f} "
            f"{baseline * 1000:>8.1f} {ratio:>6.2f} {target.limit:>6.1f}x {verdict}"
        )
    print(f"worst_ratio {max(ratios):.2f}" if ratios else "worst_ratio n/a")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
