"""The state rows: a state's size and churn, stored lean beside stored whole."""

from __future__ import annotations

from benchmarks.cost.scenarios import STATE_STEPS, Result, run_scenario

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
