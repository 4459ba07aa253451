"""The run page's resume form, drawn from the pauses API's contract before that API exists.

A paused run reads ``status: "paused"`` with ``pending: [{task, node, kind, prompt, key,
schema, since, until}]`` in ``GET /runs/{id}``, and ``POST /runs/{id}/resume`` takes
``{"value", "task"}`` (200: the run's summary; 409: nothing pending; 422: the value does not
match the schema). Here the browser's requests for those two routes are answered from that
contract (Playwright's ``page.route``) over a real run of the local stack, so that what the
form draws, sends and shows for each answer is checked now. The same form against the real
API, once pauses are merged, is tests/browser/test_dashboard_resume.py. The last tests fake
the live events too (Playwright's ``page.route_web_socket``), to redraw the page while a
person types an answer or reaches for a row.

Waits are conditions with a bound (Playwright's ``expect``), never sleeps."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, Route, WebSocketRoute, expect

from tests.browser.conftest import screenshot
from tests.browser.stack_runs import create, start, wait_until_over
from tests.browser.test_dashboard_controls import GREETING
from tests.e2e.stack import StackProcess

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.timeout(240)]

APPROVE = {
    "task": "approve", "node": "approve", "kind": "interrupt", "prompt": "Ship the plan?",
    "key": "approved", "schema": {"type": "boolean"}, "since": 1_800_000_000.0, "until": None,
}  # fmt: skip
COUNT = {
    "task": "count[1]", "node": "count", "kind": "interrupt", "prompt": "How many?",
    "key": "n", "since": 1_800_000_000.0, "until": 1_800_086_400.0,
    "schema": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
}  # fmt: skip
BEFORE = {"task": "fix", "node": "fix", "kind": "before", "prompt": None, "key": None,
          "schema": None, "since": 1_800_000_000.0, "until": None}  # fmt: skip


@pytest.fixture(scope="module")
def run_id(stack: StackProcess) -> str:
    """A finished run: its page, log and graph are real; only its header is made paused."""
    with httpx.Client(base_url=stack.api, timeout=10.0) as api:
        made = start(api, create(api, GREETING), {"name": "ann"})
        wait_until_over(api, made)
    return made


class PausedApi:
    """Answers ``GET /runs/{id}`` as a paused run with ``pending`` until a resume succeeds,
    and ``POST /runs/{id}/resume`` with the statuses queued in ``replies``."""

    def __init__(self, page: Page, run_id: str, pending: list[dict[str, Any]]) -> None:
        self.pending, self.replies = pending, [200]
        self.sent: list[Any] = []
        self.resumed = False
        page.route(re.compile(rf"/runs/{run_id}$"), self._run)
        page.route(re.compile(rf"/runs/{run_id}/resume$"), self._resume)

    def _run(self, route: Route) -> None:
        real = route.fetch()
        doc = real.json()
        if not self.resumed:
            doc = {**doc, "status": "paused", "pending": self.pending}
        route.fulfill(response=real, json=doc)

    def _resume(self, route: Route) -> None:
        self.sent.append(json.loads(route.request.post_data or "null"))
        status = self.replies.pop(0)
        if status == 200:
            self.resumed = True
            route.fulfill(status=200, json={"run_id": "x", "status": "running"})
            return
        kind = {409: "conflict", 422: "invalid_input"}[status]
        message = {409: "run is not paused", 422: "value: 'x' is not of type 'integer'"}[status]
        route.fulfill(status=status, json={"error": {"type": kind, "message": message}})


def test_a_yes_or_no_question_is_answered_with_approve(
    stack: StackProcess, run_id: str, page: Page
) -> None:
    # Given a run paused on a question with a boolean schema
    answers = PausedApi(page, run_id, [APPROVE])
    page.goto(f"{stack.api}/ui#/runs/{run_id}")
    # Then its page shows the question with Approve and Reject, and no JSON box
    form = page.locator('#questions form.resume[data-task="approve"]')
    expect(form).to_contain_text("Ship the plan?")
    expect(form.locator("button.approve")).to_be_visible()
    expect(form.locator("button.reject")).to_be_visible()
    expect(form.locator("textarea")).to_have_count(0)
    expect(page.locator(".run-header .badge")).to_have_text("paused")
    screenshot(page, "run-paused-approve")
    # When Approve is pressed, Then the answer sent is true for that task, and once the run
    # goes on the question is gone
    form.locator("button.approve").click()
    expect(page.locator("#questions")).to_have_count(0)
    assert answers.sent == [{"value": True, "task": "approve"}]


def test_each_pending_task_has_its_form_and_a_refused_answer_says_why(
    stack: StackProcess, run_id: str, page: Page
) -> None:
    # Given a run paused on two tasks: a question with an object schema, and a breakpoint
    answers = PausedApi(page, run_id, [COUNT, BEFORE])
    answers.replies = [422, 409, 200]
    page.goto(f"{stack.api}/ui#/runs/{run_id}")
    forms = page.locator("#questions form.resume")
    expect(forms).to_have_count(2)
    count = page.locator('#questions form.resume[data-task="count[1]"]')
    expect(count).to_contain_text("How many?")
    breakpoint = page.locator('#questions form.resume[data-task="fix"]')
    expect(breakpoint).to_contain_text("before fix")
    expect(breakpoint.locator("button.continue")).to_be_visible()
    expect(breakpoint.locator("textarea")).to_have_count(0)
    # When an answer is not JSON, Then it is refused in the page and nothing is sent
    count.locator("textarea").fill("{n: 3")
    count.locator("button[type=submit]").click()
    expect(count.locator(".error")).to_contain_text("Not JSON")
    assert answers.sent == []
    # When the API refuses the value (422), or finds nothing pending (409), Then each reason
    # is shown in the form
    count.locator("textarea").fill('{"n": "x"}')
    count.locator("button[type=submit]").click()
    expect(count.locator(".error")).to_contain_text("is not of type 'integer'")
    count.locator("button[type=submit]").click()
    expect(count.locator(".error")).to_contain_text("Nothing waits for an answer")
    screenshot(page, "run-paused-refused")
    # When a good value is sent, Then it goes with its task, and the questions are gone
    count.locator("textarea").fill('{"n": 3}')
    count.locator("button[type=submit]").click()
    expect(page.locator("#questions")).to_have_count(0)
    assert answers.sent == [{"value": {"n": "x"}, "task": "count[1]"}] * 2 + [
        {"value": {"n": 3}, "task": "count[1]"}
    ]


def live_paused_page(stack: StackProcess, run_id: str, page: Page) -> list[WebSocketRoute]:
    """The run's page, paused on COUNT, following the run over a WebSocket the test fakes:
    its one connection, to send events to the page with."""
    events: list[WebSocketRoute] = []
    page.route_web_socket(re.compile(r"^ws"), lambda socket: events.append(socket))
    PausedApi(page, run_id, [COUNT])
    page.goto(f"{stack.api}/ui#/runs/{run_id}")
    expect(page.locator("#live")).to_have_text("live")
    return events


def test_a_redraw_while_an_answer_is_typed_keeps_the_form_in_place(
    stack: StackProcess, run_id: str, page: Page
) -> None:
    # Given a paused run's page whose live events the test sends, and an answer half typed in
    # its form
    events = live_paused_page(stack, run_id, page)
    answer = page.locator('#questions form.resume[data-task="count[1]"] textarea')
    answer.click()
    page.keyboard.type('{"n": ')
    page.evaluate("document.querySelector('.run-header h2').dataset.drawn = 'before'")
    page.evaluate("document.querySelector('#cancel').dataset.drawn = 'before'")
    # When an event redraws the run's header (the run's status, read again)
    events[0].send(json.dumps({"type": "run", "run_id": run_id, "status": "running"}))
    expect(page.locator(".run-header h2:not([data-drawn])")).to_have_count(1)
    # Then the form was not taken out of the page: the cursor is still in the answer, whose
    # text goes on where it was
    expect(page.locator("#cancel[data-drawn]")).to_have_count(1)  # so is a paused run's Cancel
    page.keyboard.type("3}")
    expect(answer).to_have_value('{"n": 3}')
    assert page.evaluate("document.activeElement.closest('form')?.dataset.task") == "count[1]"


def test_a_step_arriving_leaves_the_timeline_rows_in_place(
    stack: StackProcess, run_id: str, page: Page
) -> None:
    # Given a run's page whose live events the test sends, with its two steps' rows drawn
    events = live_paused_page(stack, run_id, page)
    rows = page.locator("#timeline .row")
    expect(rows).to_have_count(2)
    page.evaluate("document.querySelector('#timeline .row[data-seq=\"0\"]').dataset.drawn = '0'")
    # When a third step arrives
    with httpx.Client(base_url=stack.api, timeout=10.0) as api:
        step = api.get(f"/runs/{run_id}/steps", params={"after": 0, "limit": 1}).json()["items"][0]
    events[0].send(json.dumps({**step, "type": "step", "seq": 2}))
    # Then its row is drawn beside the others, which stayed in the page (a click on them
    # cannot fall between two drawings of theirs)
    expect(rows).to_have_count(3)
    expect(page.locator('#timeline .row[data-seq="0"][data-drawn]')).to_have_count(1)
    # and choosing a step still marks its row alone
    page.locator('#timeline .row[data-seq="1"] .lane').first.click()
    expect(page.locator("#timeline .row.selected")).to_have_attribute("data-seq", "1")
