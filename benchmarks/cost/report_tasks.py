"""The chain, fan-out, map and retry rows: per step and per task, and all-in."""

from __future__ import annotations

from benchmarks.cost.meter import (
    ALL_IN_TARGETS,
    PRICE_SFN_TRANSITION,
    TASK_TARGET_USD_PER_MILLION,
)
from benchmarks.cost.scenarios import Result


# ---------------------------------------------------------------------------- report
def report(results: list[Result]) -> None:
    header = (
        f"{'dispatch':<9}{'state':>6}{'steps':>7}{'crit.path':>10}{'sqs req':>9}"
        f"{'WRU':>7}{'RRU':>7}{'lambda inv':>11}{'ms':>7}{'aws ms':>8}{'USD/M steps':>13}"
        f"{'SFN/this':>10}"
    )
    print(header)
    for r in (r for r in results if r.shape == "chain"):
        sqs = sum(n for k, n in r.meter.requests.items() if k.startswith("sqs."))
        print(
            f"{r.mode:<9}{r.state_kb:>4}KB{r.steps:>7}{r.critical_path:>10.2f}"
            f"{r.per_step(sqs):>9.2f}{r.per_step(r.meter.wru):>7.2f}{r.per_step(r.meter.rru):>7.2f}"
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
