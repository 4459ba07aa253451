"""The dashboard as a person uses it: start the code-review run from a graph's page and watch
it finish; watch a slow run move without reloading; read a failed run's error; see the
parallel example's lanes and a task's own updates; filter the runs; sign in under
``--auth strict``. Every page is screenshotted into test-artifacts/dashboard/.

Waits are conditions with a bound (Playwright's ``expect``), never sleeps."""

from __future__ import annotations

import json
import os
import shutil
from itertools import pairwise
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, WebSocket, expect

from tests.browser.conftest import DOCS_SCREENSHOT, screenshot
from tests.browser.stack_runs import LIVE, create, start, wait_until_over
from tests.e2e.stack import REPO, StackProcess, launch

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.timeout(240)]

CODE_REVIEW = json.loads((REPO / "examples" / "code_review.json").read_text())
PARALLEL = json.loads((REPO / "examples" / "parallel_research.json").read_text())
SAMPLE_CODE = (REPO / "examples" / "sample_code.py").read_text()
SLOW_CHAIN = {
    "name": "slow chain",
    "entry": "fetch",
    # fetch is long enough that the page, opened after the start, finds it running on a
    # loaded machine (a page took over 3 s to open at load 14)
    "nodes": {
        "fetch": {"tool": "wait", "settings": {"ms": 8000}},
        "parse": {"tool": "wait", "settings": {"ms": 1500}},
    },
    "edges": {"fetch": "parse", "parse": "END"},
}
STEPS = [f"step{i}" for i in range(8)]
LONGER_CHAIN = {  # long enough to be cancelled while it runs
    "name": "longer chain",
    "entry": STEPS[0],
    "nodes": {name: {"tool": "wait", "settings": {"ms": 1500}} for name in STEPS},
    "edges": {**dict(pairwise(STEPS)), STEPS[-1]: "END"},
}
BROKEN = {
    "name": "broken",
    "entry": "prepare",
    "nodes": {
        "prepare": {"tool": "emit", "settings": {"key": "ready", "value": True}},
        "call": {"tool": "wait", "settings": {"ms": -1}},
    },
    "edges": {"prepare": "call", "call": "END"},
}
LONG_LOOP = {
    "name": "long loop",
    "entry": "tick",
    "max_steps": 400,
    "nodes": {"tick": {"tool": "increment", "settings": {"key": "count"}}},
    "branches": {"tick": {"cases": [{"when": "count < 300", "to": "tick"}], "default": "END"}},
}
WIDE_MAP = {
    "name": "wide map",
    "entry": "grade",
    "state": {"notes": {"reducer": "append"}},
    "nodes": {
        "grade": {
            "tool": "fill",
            "settings": {"key": "notes", "template": "graded $doc"},
            "map": {"over": "docs", "as": "doc", "max_concurrency": 50},
        }
    },
    "edges": {"grade": "END"},
}


def marked_nodes(page: Page, mark: str, expected: set[str]) -> set[str]:
    """The drawn graph's nodes that carry ``mark`` (visited, running, failed, ended), once
    it has been drawn with ``expected`` among them (the drawing follows the timeline)."""
    page.wait_for_function(
        """([mark, names]) => {
            const drawn = JSON.parse(document.querySelector(".graph").dataset.marks || "{}");
            return names.every((n) => (drawn[mark] || []).includes(n));
        }""",
        arg=[mark, sorted(expected)],
        timeout=LIVE,
    )
    marks = json.loads(page.locator(".graph").first.get_attribute("data-marks") or "{}")
    return set(marks.get(mark, []))


def test_the_code_review_run_started_from_the_page_finishes_live(
    stack: StackProcess, api: httpx.Client, page: Page
) -> None:
    # Given the code-review graph, open on its page in the dashboard
    graph_id = create(api, CODE_REVIEW)
    frames: list[dict[str, Any]] = []

    def on_socket(socket: WebSocket) -> None:
        socket.on("framereceived", lambda frame: frames.append(json.loads(frame)))

    page.on("websocket", on_socket)
    page.goto(f"{stack.api}/ui#/graphs/{graph_id}")
    assert f"dashboard  {stack.api}/ui\n" in stack.stdout  # the banner names it
    expect(page.locator("#graph-drawing svg")).to_be_visible()
    screenshot(page, "graph")
    page.evaluate("window.sameDocument = true")  # gone if the page reloads
    # When a run is started from the page's form with the sample code
    page.fill("#start-run textarea[name=input]", json.dumps({"code": SAMPLE_CODE}))
    page.click("#start-run button[type=submit]")
    # Then the page shows the run, which ends completed without a reload
    expect(page.locator(".run-header h2")).to_contain_text("Run r_")
    expect(page.locator(".run-header .badge")).to_have_text("completed", timeout=LIVE)
    assert page.evaluate("window.sameDocument") is True
    run_id = page.url.rsplit("/", 1)[-1]
    run = api.get(f"/runs/{run_id}").json()
    assert run["status"] == "completed"
    # And the timeline has a row per step; the graph marks every node it ran, and where it ended
    expect(page.locator("#timeline .row")).to_have_count(run["steps"])
    assert marked_nodes(page, "visited", {*CODE_REVIEW["nodes"], "END"})
    assert marked_nodes(page, "ended", {"END"}) == {"evaluate", "END"}
    assert page.locator("#run-graph g.node.visited").count() >= len(CODE_REVIEW["nodes"])
    # And the run's end came over the WebSocket
    assert any(f.get("type") == "run" and f.get("status") == "completed" for f in frames)
    screenshot(page, "run-code-review")


def test_a_running_run_moves_on_the_page_as_its_tasks_commit(
    stack: StackProcess, api: httpx.Client, page: Page
) -> None:
    # Given a run of two slow steps, watched from its start
    run_id = start(api, create(api, SLOW_CHAIN), {})
    page.goto(f"{stack.api}/ui#/runs/{run_id}")
    page.evaluate("window.sameDocument = true")
    # Then the page shows a task running and the WebSocket live
    expect(page.locator("#running .lane")).to_be_visible(timeout=LIVE)
    expect(page.locator("#live")).to_have_text("live")
    assert marked_nodes(page, "running", set()) <= {"fetch", "parse"}
    screenshot(page, "run-live")
    # And each step appears as it commits, until the run completes, without a reload
    expect(page.locator("#timeline .row")).to_have_count(2, timeout=LIVE)
    expect(page.locator(".run-header .badge")).to_have_text("completed", timeout=LIVE)
    expect(page.locator("#running .lane")).to_have_count(0)
    assert page.evaluate("window.sameDocument") is True
    assert marked_nodes(page, "visited", {"END"}) == {"fetch", "parse", "END"}


def test_a_failed_run_shows_its_error_and_the_failed_task(
    stack: StackProcess, api: httpx.Client, page: Page
) -> None:
    # Given a run whose second task fails
    run_id = start(api, create(api, BROKEN), {})
    assert wait_until_over(api, run_id)["status"] == "failed"
    # When its page is opened
    page.goto(f"{stack.api}/ui#/runs/{run_id}")
    # Then the error is there to read, the failed node is marked, and so is its lane
    error = page.locator("#run-error")
    expect(error).to_contain_text("settings.ms must be a number of milliseconds")
    expect(error).to_contain_text("Error in task call")
    expect(page.locator("#timeline .lane.status-failed")).to_have_text("call")
    assert marked_nodes(page, "failed", {"call"}) == {"call"}
    # And the failed step's detail shows its error too
    page.click("#timeline .lane.status-failed")
    expect(page.locator("#step-detail .error-box")).to_contain_text("settings.ms")
    screenshot(page, "run-failed")


def test_the_parallel_example_shows_its_lanes_and_each_task_s_updates(
    stack: StackProcess, api: httpx.Client, page: Page
) -> None:
    # Given a finished run of the parallel example: a fan-out to search and a map of 3 items
    run_id = start(api, create(api, PARALLEL), {"docs": ["a", "b", "c"]})
    assert wait_until_over(api, run_id)["status"] == "completed"
    # When its page is opened
    page.goto(f"{stack.api}/ui#/runs/{run_id}")
    # Then superstep 1 shows its four tasks side by side, in merge order
    lanes = page.locator('#timeline .row[data-seq="1"] .lane')
    expect(lanes).to_have_text(["grade[0]", "grade[1]", "grade[2]", "search"])
    expect(page.locator('#timeline .row[data-seq="3"] .lane')).to_have_text(["write"])
    # And choosing it shows each task's own updates and what the merge changed in the state
    lanes.first.click()
    detail = page.locator("#step-detail")
    expect(detail.locator("h4").first).to_have_text("4 tasks, each with its own updates")
    expect(detail.locator("table.tasks tbody tr")).to_have_count(4)
    expect(detail.locator("table.tasks")).to_contain_text('{"notes":"graded b"}')
    expect(detail.locator("table.diff tr.diff-changed")).to_contain_text("notes")
    shot = screenshot(page, "run-parallel")
    if os.environ.get("UPDATE_DOCS_SCREENSHOT"):  # the README's picture of a run
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, DOCS_SCREENSHOT)


def test_the_runs_list_filters_by_status_and_the_tools_are_listed(
    stack: StackProcess, api: httpx.Client, page: Page
) -> None:
    # Given the runs list, open
    page.goto(f"{stack.api}/ui#/runs")
    expect(page.locator("table.runs")).to_be_visible()
    page.evaluate("window.sameDocument = true")
    # When a run fails and another completes
    failed = start(api, create(api, BROKEN), {})
    done = start(api, create(api, PARALLEL), {"docs": ["x"]})
    wait_until_over(api, failed)
    wait_until_over(api, done)
    # Then the list shows both without a reload, the failed one standing out
    expect(page.locator(f'tr[data-run="{failed}"]')).to_have_class("status-failed")
    expect(page.locator(f'tr[data-run="{done}"]')).to_contain_text("parallel research")
    expect(page.locator(f'tr[data-run="{done}"] td.num')).to_have_text("4")
    assert page.evaluate("window.sameDocument") is True
    screenshot(page, "runs")
    # And the graph filter offers the graphs of runs that appeared since the page opened
    expect(page.locator("select[name=graph] option", has_text="broken")).to_have_count(1)
    # And filtering by status keeps the failed runs only
    page.select_option("select[name=status]", "failed")
    expect(page.locator(f'tr[data-run="{done}"]')).to_have_count(0)
    expect(page.locator(f'tr[data-run="{failed}"]')).to_be_visible()
    assert all(
        c == "status-failed"
        for c in page.locator("tbody tr").evaluate_all("rows => rows.map(r => r.className)")
    )
    # And the tools page lists the registered tools with what they read and write
    page.goto(f"{stack.api}/ui#/tools")
    expect(page.locator("table.tools")).to_contain_text("extract_functions")
    screenshot(page, "tools")


def test_signing_in_under_strict_auth(page: Page) -> None:
    # Given a stack that refuses every request without a token
    strict = launch("sqs", options=("--auth", "strict"))
    try:
        # When the dashboard is opened
        page.goto(f"{strict.api}/ui")
        # Then it asks to sign in, with the local issuer or a token
        form = page.locator("#local-signin")
        expect(form).to_be_visible()
        expect(page.locator("textarea[name=token]")).to_be_visible()
        screenshot(page, "sign-in")
        # And once signed in as alice, it shows alice's (empty) runs
        secret = (strict.data / "login-secret").read_text().strip()
        form.locator("input[name=user]").fill("alice")
        form.locator("input[name=secret]").fill(secret)
        form.locator("button[type=submit]").click()
        expect(page.locator("#user")).to_have_text("alice")
        expect(page.locator("h2")).to_have_text("Runs")
        expect(page.locator("table.runs")).to_contain_text("No runs yet")
        # And alice's run is followed live over the WebSocket, with her token
        token = page.evaluate("localStorage.getItem('hopgraph.token')")
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=strict.api, headers=headers, timeout=10.0) as alice:
            run_id = start(alice, create(alice, SLOW_CHAIN), {})
        page.goto(f"{strict.api}/ui#/runs/{run_id}")
        expect(page.locator("#live")).to_have_text("live", timeout=LIVE)
        expect(page.locator(".run-header .badge")).to_have_text("completed", timeout=LIVE)
        expect(page.locator("#timeline .row")).to_have_count(2)
        # And a reload keeps the session; signing out asks again
        page.reload()
        expect(page.locator("#user")).to_have_text("alice")
        expect(page.locator(".run-header .badge")).to_have_text("completed")
        page.click("text=sign out")
        expect(page.locator("#local-signin")).to_be_visible()
        # And an admin sees everyone's runs, with their owners
        form.locator("input[name=user]").fill("ops")
        form.locator("input[name=secret]").fill(secret)
        form.locator("input[name=admin]").check()
        form.locator("button[type=submit]").click()
        expect(page.locator("#user")).to_have_text("ops (admin)")
        page.goto(f"{strict.api}/ui#/runs")
        expect(page.locator(f'tr[data-run="{run_id}"] td').last).to_have_text("alice")
        screenshot(page, "runs-admin")
    finally:
        strict.stop()


def test_a_long_run_draws_only_the_visible_rows_of_its_timeline(
    stack: StackProcess, api: httpx.Client, page: Page
) -> None:
    # Given a finished run of 300 supersteps
    run_id = start(api, create(api, LONG_LOOP), {})
    run = wait_until_over(api, run_id, bound_s=180)
    assert (run["status"], run["steps"]) == ("completed", 300)
    # When its page is opened
    page.goto(f"{stack.api}/ui#/runs/{run_id}")
    expect(page.locator("#step-count")).to_have_text("300 of at most 400")
    # Then the timeline is scrolled to the end, drawing only the rows in view
    expect(page.locator('#timeline .row[data-seq="299"]')).to_be_visible()
    assert page.locator("#timeline .row").count() < 60
    # And scrolling to the top draws the first rows instead
    page.locator("#timeline").evaluate("box => { box.scrollTop = 0; }")
    expect(page.locator('#timeline .row[data-seq="0"]')).to_be_visible()
    expect(page.locator('#timeline .row[data-seq="299"]')).to_have_count(0)
    screenshot(page, "run-long")


def test_a_wide_map_is_summarized_and_its_tasks_paged(
    stack: StackProcess, api: httpx.Client, page: Page
) -> None:
    # Given a finished map over 250 items
    docs = [f"d{i}" for i in range(250)]
    run_id = start(api, create(api, WIDE_MAP), {"docs": docs})
    assert wait_until_over(api, run_id, bound_s=180)["status"] == "completed"
    # When its page is opened
    page.goto(f"{stack.api}/ui#/runs/{run_id}")
    # Then its superstep shows a few lanes and a summary of the rest
    row = page.locator('#timeline .row[data-seq="0"]')
    expect(row.locator(".lane")).to_have_count(12)
    expect(row.locator(".lane-summary")).to_have_text("+238 more")
    # And its tasks are listed a page at a time
    row.locator(".lane").first.click()
    tasks = page.locator("#step-detail table.tasks tbody tr")
    expect(tasks).to_have_count(100)
    page.click("#step-detail button.more")
    expect(tasks).to_have_count(200)
    expect(page.locator("#step-detail table.tasks")).to_contain_text('"graded d199"')
    screenshot(page, "run-wide-map")


def test_a_running_run_is_cancelled_from_its_page(
    stack: StackProcess, api: httpx.Client, page: Page
) -> None:
    # Given a slow run, open on its page while it runs
    run_id = start(api, create(api, LONGER_CHAIN), {})
    page.goto(f"{stack.api}/ui#/runs/{run_id}")
    expect(page.locator("#running .lane")).to_be_visible(timeout=LIVE)
    # When Cancel is pressed and confirmed
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#cancel")
    # Then the run is cancelled, on the page and in the API, and the button is gone
    expect(page.locator(".run-header .badge")).to_have_text("cancelled", timeout=LIVE)
    expect(page.locator("#cancel")).to_have_count(0)
    assert wait_until_over(api, run_id)["status"] == "cancelled"


def test_a_child_run_and_its_parent_link_to_each_other(
    stack: StackProcess, api: httpx.Client, page: Page
) -> None:
    # Given a finished run of a map whose items each ran the joke subgraph as a child run
    ports = REPO / "examples" / "langgraph"
    create(api, json.loads((ports / "subgraph_joke.json").read_text()))
    graph_id = create(api, json.loads((ports / "subgraph_map.json").read_text()))
    run_id = start(api, graph_id, {"subjects": ["cats", "dogs"]})
    assert wait_until_over(api, run_id)["status"] == "completed"
    # When its page is opened and its superstep chosen
    page.goto(f"{stack.api}/ui#/runs/{run_id}")
    page.locator('#timeline .row[data-seq="0"] .lane').first.click()
    # Then each item's task links to its child run
    children = page.locator("#step-detail table.tasks a.child-run")
    expect(children).to_have_count(2)
    # And the child's page links back to the parent's task
    children.first.click()
    parent = page.locator("#run-parent")
    expect(parent).to_contain_text(run_id)
    expect(parent).to_contain_text("task generate_joke[0] of step 0")
    screenshot(page, "run-child")
