"""The dashboard's controls on runs, checked through the API: fork a run from a step of its
timeline with an edited state, redrive a failed run, and the runs list's counts by status.
Screenshots go to test-artifacts/dashboard/.

Waits are conditions with a bound (Playwright's ``expect``), never sleeps."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot
from tests.browser.stack_runs import LIVE, create, start, wait_until_over
from tests.e2e.stack import StackProcess

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.timeout(240)]

GREETING = {
    "name": "greeting",
    "entry": "prepare",
    "nodes": {
        "prepare": {"tool": "emit", "settings": {"key": "ready", "value": True}},
        "greet": {"tool": "fill", "settings": {"key": "greeting", "template": "hello $name"}},
    },
    "edges": {"prepare": "greet", "greet": "END"},
}
STOPPED_LOOP = {  # stopped by its step limit: a redrive under a higher one completes it
    "name": "loop past its limit",
    "entry": "tick",
    "max_steps": 4,
    "nodes": {"tick": {"tool": "increment", "settings": {"key": "count"}}},
    "branches": {"tick": {"cases": [{"when": "count < 8", "to": "tick"}], "default": "END"}},
}
NEVER = {
    "name": "never",
    "entry": "call",
    "nodes": {"call": {"tool": "flaky", "settings": {"succeed_on": 0}}},
    "edges": {"call": "END"},
}


def test_a_run_is_forked_from_a_step_with_an_edited_state(
    stack: StackProcess, api: httpx.Client, page: Page
) -> None:
    # Given a finished run that greeted ann
    run_id = start(api, create(api, GREETING), {"name": "ann"})
    assert wait_until_over(api, run_id)["state"]["greeting"] == "hello ann"
    page.goto(f"{stack.api}/ui#/runs/{run_id}")
    # When its first step's fork button is pressed, the state edited, and Fork pressed
    page.locator('#timeline .row[data-seq="0"] button.fork').click()
    form = page.locator("#step-detail form.fork")
    expect(form).to_be_visible()
    form.locator("textarea").fill('{"name": "bob"}')
    screenshot(page, "run-fork-form")
    form.locator("button[type=submit]").click()
    # Then the page opens the new run, which names its parent and step
    expect(page).to_have_url(re.compile(r"#/runs/(?!" + run_id + r")[\w-]+$"), timeout=LIVE)
    fork_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("#run-parent")).to_contain_text(f"{run_id} (forked from step 0)")
    # And, through the API, it went on from that step with the edit and greeted bob
    forked = wait_until_over(api, fork_id)
    assert (forked["status"], forked["state"]["greeting"]) == ("completed", "hello bob")
    assert forked["parent"] == {"run_id": run_id, "seq": 0}
    expect(page.locator(".run-header .badge")).to_have_text("completed", timeout=LIVE)
    screenshot(page, "run-forked")


def test_a_bad_fork_edit_is_refused_on_the_page(
    stack: StackProcess, api: httpx.Client, page: Page
) -> None:
    # Given a finished run, open on its page with its first step's fork form
    run_id = start(api, create(api, GREETING), {"name": "ann"})
    wait_until_over(api, run_id)
    page.goto(f"{stack.api}/ui#/runs/{run_id}")
    page.locator('#timeline .row[data-seq="0"] button.fork').click()
    form = page.locator("#step-detail form.fork")
    # When the edit is not a JSON object, Then it is refused there and nothing is forked
    form.locator("textarea").fill("[1, 2]")
    form.locator("button[type=submit]").click()
    expect(form.locator(".error")).to_contain_text("JSON object")
    form.locator("textarea").fill("{oops")
    form.locator("button[type=submit]").click()
    expect(form.locator(".error")).to_contain_text("Not JSON")
    assert page.url.endswith(f"#/runs/{run_id}")


def test_a_failed_run_is_redriven_from_its_page(
    stack: StackProcess, api: httpx.Client, page: Page
) -> None:
    # Given a run its step limit stopped, open on its page
    run_id = start(api, create(api, STOPPED_LOOP), {})
    assert wait_until_over(api, run_id)["status"] == "failed"
    page.goto(f"{stack.api}/ui#/runs/{run_id}")
    expect(page.locator("#run-error")).to_be_visible()
    # When Redrive is pressed without a higher limit, Then the API's refusal is shown
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#redrive")
    expect(page.locator(".controls .error")).to_contain_text("max_steps of at least")
    assert api.get(f"/runs/{run_id}").json()["status"] == "failed"
    screenshot(page, "run-redrive-refused")
    # and pressed again so, the new refusal takes the old one's place
    page.evaluate("document.querySelector('.controls .error').dataset.shown = 'first'")
    page.click("#redrive")
    expect(page.locator(".controls .error:not([data-shown])")).to_have_count(1)
    expect(page.locator(".controls .error")).to_have_count(1)
    # When it is pressed with a higher limit
    page.fill("#redrive-max-steps", "30")
    page.click("#redrive")
    # Then the run goes on and completes, on the page and in the API, the failure kept
    expect(page.locator(".run-header .badge")).to_have_text("completed", timeout=LIVE)
    expect(page.locator("#redrive")).to_have_count(0)
    done = wait_until_over(api, run_id)
    assert (done["status"], done["state"]["count"], done["max_steps"]) == ("completed", 8, 30)
    history = api.get(f"/runs/{run_id}/history").json()["items"]
    sources = [(h["run_status"], h["source"]) for h in history]
    assert ("failed", None) in sources and ("running", "redrive") in sources
    screenshot(page, "run-redriven")


def test_the_runs_list_counts_runs_by_status(
    stack: StackProcess, api: httpx.Client, page: Page
) -> None:
    # Given a failed run among others, every one over
    run_id = start(api, create(api, NEVER), {})
    wait_until_over(api, run_id)
    expected = api.get("/runs/counts").json()["counts"]
    assert expected["failed"] >= 1
    # When the runs list is opened
    page.goto(f"{stack.api}/ui#/runs")
    # Then it shows each status's count, as the API counts them
    for status, count in expected.items():
        link = page.locator(f'#run-counts a[data-status="{status}"]')
        expect(link).to_have_text(f"{status} {count}", timeout=LIVE)
    screenshot(page, "runs-counts")
    # And a count leads to the list of its runs
    page.locator('#run-counts a[data-status="failed"]').click()
    rows = page.locator("table.runs tbody tr")
    expect(rows).to_have_count(expected["failed"], timeout=LIVE)
    expect(page.locator("table.runs tbody tr.status-failed")).to_have_count(expected["failed"])
