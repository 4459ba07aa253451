"""Large runs on the dashboard: a run of 1,000 supersteps shows its last steps first and
reaches its first and any other by scrolling (the log read a page at a time, only the rows
in view drawn); a wide map shows a summary and pages its tasks (1,000 items here: the page
reads the same way at 10,000, whose making takes minutes on the local stack; the benchmark
makes that one).

The runs are made through the local stack's worker. How fast the pages are is measured by
benchmarks/dashboard_scale.py, never asserted here: these tests assert on what is shown."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot
from tests.browser.stack_runs import create, start, wait_until_over
from tests.e2e.stack import StackProcess

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.timeout(900)]

STEPS = 1000
ITEMS = 1_000
LOOP = {
    "name": "thousand steps",
    "entry": "tick",
    "max_steps": STEPS + 10,
    "nodes": {"tick": {"tool": "increment", "settings": {"key": "count"}}},
    "branches": {"tick": {"cases": [{"when": f"count < {STEPS}", "to": "tick"}], "default": "END"}},
}
MAP: dict[str, Any] = {
    "name": "a thousand items",
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
SHOWN = 30_000  # ms: the longest a page may take to show what is asked


def test_a_run_of_a_thousand_supersteps_opens_at_its_end_and_reaches_its_start(
    stack: StackProcess, api: httpx.Client, page: Page
) -> None:
    # Given a finished run of 1,000 supersteps
    run_id = start(api, create(api, LOOP), {})
    run = wait_until_over(api, run_id, bound_s=600)
    assert (run["status"], run["steps"]) == ("completed", STEPS)
    # When its page is opened, it shows its last step, drawing only the rows in view
    page.goto(f"{stack.api}/ui#/runs/{run_id}")
    expect(page.locator("#step-count")).to_have_text(f"{STEPS} of at most {STEPS + 10}")
    last = page.locator(f'#timeline .row[data-seq="{STEPS - 1}"]')
    expect(last).to_be_visible(timeout=SHOWN)
    assert page.locator("#timeline .row").count() < 60
    # And the last step opens with its state
    last.locator(".lane").click()
    expect(page.locator("#step-detail h3")).to_contain_text(f"Step {STEPS - 1}: tick")
    expect(page.locator("#step-detail")).to_contain_text(f'"count": {STEPS}')
    # And scrolling reaches the first step, then one in the middle, each drawn with its node
    timeline = page.locator("#timeline")
    timeline.evaluate("box => { box.scrollTop = 0; }")
    first = page.locator('#timeline .row[data-seq="0"]')
    expect(first).to_be_visible(timeout=SHOWN)
    expect(first.locator(".lane")).to_have_text("tick")
    expect(last).to_have_count(0)
    timeline.evaluate("box => { box.scrollTop = 34 * 500; }")  # ROW px per step (app.js)
    expect(page.locator('#timeline .row[data-seq="510"] .lane')).to_have_text("tick", timeout=SHOWN)
    first_shown = page.locator("#timeline .row").first.get_attribute("data-seq")
    assert first_shown is not None and 480 <= int(first_shown) <= 510
    # And once the whole log is read, the graph marks its node visited
    page.wait_for_function(
        """() => (JSON.parse(document.querySelector(".graph").dataset.marks || "{}").visited
                  || []).includes("tick")""",
        timeout=SHOWN,
    )
    screenshot(page, "run-thousand-steps")


def test_a_wide_map_is_summarized(stack: StackProcess, api: httpx.Client, page: Page) -> None:
    # Given a finished map over 1,000 items
    docs = [f"d{i}" for i in range(ITEMS)]
    run_id = start(api, create(api, MAP), {"docs": docs})
    assert wait_until_over(api, run_id, bound_s=800)["status"] == "completed"
    # When its page is opened, its superstep shows a few lanes and a summary of the rest
    page.goto(f"{stack.api}/ui#/runs/{run_id}")
    row = page.locator('#timeline .row[data-seq="0"]')
    expect(row.locator(".lane")).to_have_count(12, timeout=SHOWN)
    expect(row.locator(".lane-summary")).to_have_text(f"+{ITEMS - 12} more")
    # And its tasks are counted and listed a page at a time, not all at once
    row.locator(".lane").first.click()
    expect(page.locator("#step-detail h4").first).to_have_text(
        f"{ITEMS} tasks, each with its own updates", timeout=SHOWN
    )
    tasks = page.locator("#step-detail table.tasks tbody tr")
    expect(tasks).to_have_count(100)
    page.click("#step-detail button.more")
    expect(tasks).to_have_count(200, timeout=SHOWN)  # the next page: one page of the store
    screenshot(page, "run-wide-map")
