"""A paused run answered from its page, against the real pauses API (its rendering against
the API's contract is tests/browser/test_dashboard_resume_form.py).

NEEDS PAUSES: these tests run once the engine has the ``paused`` status (they are skipped
until ``engine.lifecycle.RunStatus`` names it); the graph shapes follow the pauses API's
description: an ``{"interrupt": {"prompt", "key", "schema"}}`` node, ``POST
/runs/{id}/resume`` with ``{"value", "task"}``. Adjust APPROVAL and COUNT if the node's
syntax differs.

Waits are conditions with a bound (Playwright's ``expect``), never sleeps."""

from __future__ import annotations

import time
from typing import Any, get_args

import httpx
import pytest
from playwright.sync_api import Page, expect

from engine.lifecycle import RunStatus
from tests.browser.conftest import screenshot
from tests.browser.stack_runs import LIVE, create, start, wait_until_over
from tests.e2e.stack import StackProcess

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.timeout(240),
    pytest.mark.skipif(
        "paused" not in get_args(RunStatus), reason="needs pauses: the engine has no paused runs"
    ),
]

APPROVAL = {
    "name": "approval",
    "entry": "plan",
    "nodes": {
        "plan": {"tool": "emit", "settings": {"key": "plan", "value": "ship it"}},
        "approve": {
            "interrupt": {
                "prompt": "Approve the plan?", "key": "approved", "schema": {"type": "boolean"}
            }
        },
        "done": {"tool": "fill", "settings": {"key": "outcome", "template": "approved=$approved"}},
    },
    "edges": {"plan": "approve", "approve": "done", "done": "END"},
}  # fmt: skip
COUNT = {
    "name": "how many",
    "entry": "ask",
    "nodes": {
        "ask": {
            "interrupt": {
                "prompt": "How many?", "key": "answer",
                "schema": {"type": "object", "properties": {"n": {"type": "integer"}},
                           "required": ["n"]},
            }
        },
    },
    "edges": {"ask": "END"},
}  # fmt: skip


def paused(api: httpx.Client, run_id: str, bound_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + bound_s
    while (run := api.get(f"/runs/{run_id}").json())["status"] != "paused":
        assert run["status"] == "running", run
        assert time.monotonic() < deadline, f"run {run_id} not paused after {bound_s} s"
        time.sleep(0.2)
    return run  # type: ignore[no-any-return]


def test_a_paused_run_is_approved_from_its_page_and_goes_on(
    stack: StackProcess, api: httpx.Client, page: Page
) -> None:
    # Given a run paused on a yes-or-no question
    run_id = start(api, create(api, APPROVAL), {})
    assert [p["task"] for p in paused(api, run_id)["pending"]] == ["approve"]
    # When its page is opened
    page.goto(f"{stack.api}/ui#/runs/{run_id}")
    # Then the question is asked, with Approve and Reject
    form = page.locator('#questions form.resume[data-task="approve"]')
    expect(form).to_contain_text("Approve the plan?")
    expect(page.locator(".run-header .badge")).to_have_text("paused")
    screenshot(page, "run-paused")
    # When Approve is pressed, Then the run goes on live and completes with the answer
    form.locator("button.approve").click()
    expect(page.locator(".run-header .badge")).to_have_text("completed", timeout=LIVE)
    expect(page.locator("#questions")).to_have_count(0)
    done = wait_until_over(api, run_id)
    assert (done["state"]["approved"], done["state"]["outcome"]) == (True, "approved=True")
    screenshot(page, "run-resumed")


def test_an_answer_that_does_not_match_the_schema_is_refused_on_the_page(
    stack: StackProcess, api: httpx.Client, page: Page
) -> None:
    # Given a run paused on a question whose answer is an object with an integer
    run_id = start(api, create(api, COUNT), {})
    paused(api, run_id)
    page.goto(f"{stack.api}/ui#/runs/{run_id}")
    form = page.locator('#questions form.resume[data-task="ask"]')
    # When a value of the wrong shape is sent, Then the API's refusal (422) is shown and the
    # run still waits
    form.locator("textarea").fill('{"n": "three"}')
    form.locator("button[type=submit]").click()
    expect(form.locator(".error")).not_to_be_empty()
    assert api.get(f"/runs/{run_id}").json()["status"] == "paused"
    # When a good one is sent, Then the run completes with it
    form.locator("textarea").fill('{"n": 3}')
    form.locator("button[type=submit]").click()
    expect(page.locator(".run-header .badge")).to_have_text("completed", timeout=LIVE)
    assert wait_until_over(api, run_id)["state"]["answer"] == {"n": 3}
