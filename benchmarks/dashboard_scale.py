"""The dashboard on large runs: a run of 1,000 supersteps and a map of 10,000 items.

On a fresh local stack (``hopgraph dev`` on free ports, as benchmarks/wide_map.py starts it),
the runs are made through the real worker over HTTP: a loop of a trivial tool (``increment``)
for 1,000 supersteps, a map of ``fill`` over 10,000 items. Each run's page is then opened in
headless Chromium (Debian's, through Playwright, as tests/browser/ drive it) and timed:

- render: from ``page.goto`` to the first complete render, a DOM condition: the step count in
  the header, the timeline's last row visible, and for the map its summary of the tasks not
  drawn as lanes;
- responsive: from asking to the answer on the page: scroll the timeline to its first row
  and see it drawn, then open the last step (its detail heading shown), and for the map open
  its superstep and see the first page of its tasks listed.

The reference, measured in the same invocation on the same stack: the same pages for a run
of 10 supersteps and a map of 10 items. Printed: each figure, the reference, their ratio and
the target (under 2 s for the large run). Not a test: nothing here asserts on time.

Run: ``make dashboard`` once (the vendored Mermaid), then
``.venv/bin/python benchmarks/dashboard_scale.py [--steps 1000] [--items 10000]
[--cases steps,map]``. The load average is printed before and after the measures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the stack launcher lives with the end-to-end tests

from tests.e2e.stack import StackFailed, launch, run_to_end  # noqa: E402

TARGET_S = 2.0
DEADLINE_S = 1800.0
BOUND_MS = 120_000  # the longest any page condition is waited for


def loop(steps: int) -> dict[str, Any]:
    return {
        "name": f"loop of {steps}",
        "entry": "tick",
        "max_steps": steps + 10,
        "nodes": {"tick": {"tool": "increment", "settings": {"key": "count"}}},
        "branches": {
            "tick": {"cases": [{"when": f"count < {steps}", "to": "tick"}], "default": "END"}
        },
    }


MAP = {
    "name": "wide map",
    "entry": "grade",
    "state": {"notes": {"reducer": "append"}},
    "nodes": {
        "grade": {
            "tool": "fill",
            "settings": {"key": "notes", "template": "graded $doc"},
            "map": {"over": "docs", "as": "doc"},
        }
    },
    "edges": {"grade": "END"},
}


def make_run(client: httpx.Client, graph: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    reply = client.post("/graphs", params={"reuse": "true"}, json=graph).raise_for_status()
    seconds, run = run_to_end(client, reply.json()["graph_id"], state, 0.2, DEADLINE_S)
    print(f"  made {graph['name']}: {run['steps']} steps in {seconds:.1f} s", flush=True)
    return run


def timed(action: Any) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def measure(page: Any, api: str, run: dict[str, Any], is_map: bool, wide: bool) -> dict[str, float]:
    """Seconds to the first complete render and to each answer of the page."""
    last = run["steps"] - 1
    timeline = page.locator("#timeline")

    def render() -> None:
        page.goto("about:blank")
        page.goto(f"{api}/ui#/runs/{run['run_id']}")
        page.locator("#step-count", has_text=f"{run['steps']} of").wait_for(timeout=BOUND_MS)
        page.locator(f'#timeline .row[data-seq="{last}"]').wait_for(timeout=BOUND_MS)
        if wide:  # a map wider than the lanes drawn: its summary (the reference has none)
            page.locator("#timeline .lane-summary").first.wait_for(timeout=BOUND_MS)

    def scroll_to_first() -> None:
        timeline.evaluate("box => { box.scrollTop = 0; }")
        page.locator('#timeline .row[data-seq="0"]').wait_for(timeout=BOUND_MS)

    def open_last() -> None:
        timeline.evaluate("box => { box.scrollTop = box.scrollHeight; }")
        page.locator(f'#timeline .row[data-seq="{last}"] .lane').first.click(timeout=BOUND_MS)
        page.locator("#step-detail h3", has_text=f"Step {last}:").wait_for(timeout=BOUND_MS)

    def open_map() -> None:
        timeline.evaluate("box => { box.scrollTop = 0; }")
        page.locator('#timeline .row[data-seq="0"] .lane').first.click(timeout=BOUND_MS)
        page.locator("#step-detail table.tasks tbody tr").nth(0).wait_for(timeout=BOUND_MS)

    def more_tasks() -> None:  # the map's next page of tasks (a wide map's only)
        shown = page.locator("#step-detail table.tasks tbody tr").count()
        page.locator("#step-detail button.more").click(timeout=BOUND_MS)
        page.locator("#step-detail table.tasks tbody tr").nth(shown).wait_for(timeout=BOUND_MS)

    figures = {"render": timed(render), "scroll to the first step": timed(scroll_to_first),
               "open the last step": timed(open_last)}  # fmt: skip
    if is_map:
        figures["open the map's tasks"] = timed(open_map)
        if page.locator("#step-detail button.more").is_visible():
            figures["its next page of tasks"] = timed(more_tasks)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--reference", type=int, default=10)
    parser.add_argument("--cases", default="steps,map", help="steps, map, or both (default)")
    args = parser.parse_args(argv)
    cases = set(args.cases.split(","))

    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if not chromium:
        print("Debian's chromium is not installed: run `make chromium`", file=sys.stderr)
        return 2
    stack = launch("sqs")
    try:
        with httpx.Client(base_url=stack.api, timeout=30.0) as client:
            print("making the runs on the local stack (through its worker):", flush=True)
            runs = {}
            if "steps" in cases:
                runs["steps"] = (make_run(client, loop(args.steps), {}),
                                 make_run(client, loop(args.reference), {}))  # fmt: skip
            if "map" in cases:
                docs = [f"d{i}" for i in range(args.items)]
                runs["map"] = (make_run(client, MAP, {"docs": docs}),
                               make_run(client, MAP, {"docs": docs[: args.reference]}))  # fmt: skip
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{stack.api}/ui#/runs")  # warm: the page's files and the sign-in
            page.locator("table.runs").wait_for(timeout=BOUND_MS)
            first = next(iter(runs.values()))[1]
            measure(page, stack.api, first, False, False)  # warm: Mermaid's first drawing
            lines = []
            load = "load average (1, 5, 15 min) at the measures: %.2f %.2f %.2f"
            print(load % os.getloadavg(), flush=True)
            for kind, (large, small) in runs.items():
                big = measure(page, stack.api, large, kind == "map", kind == "map")
                ref = measure(page, stack.api, small, kind == "map", False)
                size = f"{args.steps} supersteps" if kind == "steps" else f"{args.items} items"
                for name, seconds in big.items():
                    reference = ref.get(name, float("nan"))  # a small map has no next page
                    lines.append((f"{size}: {name}", seconds, reference))
                    print(f"  {size}: {name}: {seconds:.3f} s (reference {reference:.3f} s)",
                          flush=True)  # fmt: skip
            print(load % os.getloadavg(), flush=True)
            browser.close()
    finally:
        try:
            stack.stop()
        except StackFailed:  # a slow stop on a loaded machine: the figures stand
            stack.kill_all()
    print(f"\n{'page (large run)':44} {'large s':>8} {'ref s':>7} {'ratio':>6}  target")
    for name, seconds, reference in lines:
        ratio = seconds / reference
        print(f"{name:44} {seconds:8.3f} {reference:7.3f} {ratio:6.1f}  < {TARGET_S:.0f} s")
    print("dashboard_scale_s " + " ".join(f"{n.split(':')[1].strip().replace(' ', '_')}:{s:.3f}"
                                          for n, s, _ in lines))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
