"""What the dashboard at ``/ui`` reads through the Lambda handler: its page and files (open,
as template.yaml declares), ``/me``, one step with its state and its tasks' updates, the
Mermaid ids of a graph's nodes, and the owner of each listed run."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from typing import Any

import pytest

from functions.dashboard.routes import VENDOR
from tests import auth_tokens
from tests.e2e.stack import REPO
from tests.functional.api_harness import ApiStack, api_stack, http_event

WS_URL = "wss://abc123.execute-api.us-east-1.amazonaws.com/prod"
PARALLEL = json.loads((REPO / "examples" / "parallel_research.json").read_text())


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiStack]:
    with api_stack(monkeypatch, ws_url=WS_URL) as s:
        yield s


def get(stack: ApiStack, path: str, token: str | None = "default", **query: Any) -> Any:
    kwargs: dict[str, Any] = {"path": path, "method": "GET"}
    if query:
        kwargs["query"] = query
    return stack.call("http_get_run", token=token, **kwargs)


def run_parallel(stack: ApiStack) -> str:
    created = stack.call("http_create_graph", body=PARALLEL)
    assert created.status == 201, created.text
    body = {"graph_id": created.json()["graph_id"], "input": {"docs": ["a", "b", "c"]}}
    started = stack.call("http_start_run", body=body)
    assert started.status == 202, started.text
    stack.drain()
    return str(started.json()["run_id"])


def test_the_page_is_served_without_a_token(stack: ApiStack) -> None:
    reply = get(stack, "/ui", token=None)
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/html")
    assert '<script src="ui/assets/app.js"' in reply.text


def test_the_page_files_are_served_and_nothing_else(stack: ApiStack) -> None:
    # the page's own script and style
    for name, media in (("app.js", "text/javascript"), ("style.css", "text/css")):
        reply = get(stack, f"/ui/assets/{name}", token=None)
        assert (reply.status, reply.headers["content-type"].split(";")[0]) == (200, media)
    # a name that is no file of the page, or that climbs out of its folder
    for name in ("nope.js", "..%2Froutes.py", "routes.py"):
        assert get(stack, f"/ui/assets/{name}", token=None).status == 404


@pytest.mark.skipif(not (VENDOR / "mermaid.min.js").exists(), reason="run `make dashboard`")
def test_mermaid_is_served_gzipped_to_a_browser_and_fits_a_lambda_response(
    stack: ApiStack,
) -> None:
    # Given the browser's request for Mermaid (browsers accept gzip)
    event = http_event("http_get_run", path="/ui/assets/mermaid.min.js", method="GET")
    event["headers"]["accept-encoding"] = "gzip, deflate, br"
    # When the handler answers it
    from functions.api.handler import handler
    from infra.stack.lambda_context import LambdaContext

    result = handler(event, LambdaContext(function_name="hopgraph-api"))  # type: ignore[arg-type]
    # Then it is the pinned bundle, gzipped, in a response under Lambda's 6 MB limit
    assert result["statusCode"] == 200 and result["headers"]["content-encoding"] == "gzip"
    assert len(json.dumps(result)) < 6 * 1024 * 1024
    script = gzip.decompress(base64.b64decode(result["body"]))
    assert script == (VENDOR / "mermaid.min.js").read_bytes()


def test_me_says_who_calls_and_where_the_websocket_is(stack: ApiStack) -> None:
    reply = get(stack, "/me", token=auth_tokens.token("alice"))
    assert reply.status == 200, reply.text
    assert reply.json() == {"user": "alice", "admin": False, "websocket_url": WS_URL}
    assert get(stack, "/me", token=None).status == 401


def test_a_step_reads_with_its_state_and_each_task_s_own_updates(stack: ApiStack) -> None:
    # Given a finished run of the parallel example: plan, then search with a 3-item map
    run_id = run_parallel(stack)
    # When its superstep 1 is read
    reply = get(stack, f"/runs/{run_id}/steps/1")
    assert reply.status == 200, reply.text
    step = reply.json()
    # Then it has the merged updates, the state after it, and each task's own updates
    assert step["seq"] == 1 and step["task_count"] == 4
    # (LangGraph's merge order: the edge-triggered task first, then the map's items)
    assert step["state"]["notes"] == ["plan", "search", "graded a", "graded b", "graded c"]
    tasks = {t["task"]: t["updates"] for t in step["task_details"]}
    assert tasks == {
        "grade[0]": {"notes": "graded a"},
        "grade[1]": {"notes": "graded b"},
        "grade[2]": {"notes": "graded c"},
        "search": {"notes": "search"},
    }
    assert step["task_next"] is None


def test_a_superstep_s_tasks_are_paged_by_cursor(stack: ApiStack) -> None:
    # Given superstep 1 of the parallel example: search, and a map of three items
    run_id = run_parallel(stack)
    path = f"/runs/{run_id}/steps/1"
    # When its tasks are read two at a time, following `task_next`
    first = get(stack, path, task_limit=2).json()
    second = get(stack, path, task_limit=2, task_after=first["task_next"]).json()
    # Then the pages hold them all once, by item index (a task that is no item first)
    keys = [t["task"] for page in (first, second) for t in page["task_details"]]
    assert keys == ["search", "grade[0]", "grade[1]", "grade[2]"]
    assert second["task_next"] is None and second["task_count"] == 4
    # And a cursor that no page gave is refused
    refused = get(stack, path, task_after="bm90IGEgY3Vyc29y")
    assert (refused.status, refused.json()["error"]["type"]) == (422, "invalid_input")


def test_the_tasks_route_goes_on_from_the_step_s_first_page(stack: ApiStack) -> None:
    # Given the first page of superstep 1's tasks, read with the step
    run_id = run_parallel(stack)
    first = get(stack, f"/runs/{run_id}/steps/1", task_limit=1).json()
    # When the next pages are read from the tasks route alone, following `next_after`
    keys, after = [t["task"] for t in first["task_details"]], first["task_next"]
    for _ in range(10):
        page = get(stack, f"/runs/{run_id}/steps/1/tasks", limit=2, after=after).json()
        keys += [t["task"] for t in page["items"]]
        after = page["next_after"]
        if after is None:
            break
    # Then together they are every task once, each with its own updates
    assert keys == ["search", "grade[0]", "grade[1]", "grade[2]"]
    whole = get(stack, f"/runs/{run_id}/steps/1/tasks").json()
    assert whole["items"][1]["updates"] == {"notes": "graded a"}
    assert whole["next_after"] is None
    # And another user's run has no tasks to show
    other = get(stack, f"/runs/{run_id}/steps/1/tasks", token=auth_tokens.token("mallory"))
    assert other.status == 404


def test_a_page_of_tasks_stops_before_its_byte_budget_and_goes_on_after(
    stack: ApiStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a page budget that holds about two tasks' updates
    from functions.api import step_pages

    run_id = run_parallel(stack)
    monkeypatch.setattr(step_pages, "PAGE_BUDGET_BYTES", 45)
    path = f"/runs/{run_id}/steps/1"
    # When the tasks are read 3 at a time, following `task_next`
    keys, after = [], None
    for _ in range(10):
        page = get(stack, path, task_limit=3, **({"task_after": after} if after else {})).json()
        keys.append([t["task"] for t in page["task_details"]])
        after = page["task_next"]
        if after is None:
            break
    # Then each page stopped at a whole task before the budget, and none was lost
    assert keys == [["search", "grade[0]"], ["grade[1]", "grade[2]"]]


def test_a_chain_step_has_its_state_and_no_task_details(stack: ApiStack) -> None:
    created = stack.call("http_create_graph")
    body = {"graph_id": created.json()["graph_id"], "input": {"code": "x = 1\n"}}
    run_id = stack.call("http_start_run", body=body).json()["run_id"]
    stack.drain()
    step = get(stack, f"/runs/{run_id}/steps/0").json()
    assert (step["node"], step["task_count"], step["task_details"]) == ("extract", 1, [])
    assert step["state"]["code"] == "x = 1\n" and "functions" in step["state"]


def test_a_step_not_committed_is_not_found(stack: ApiStack) -> None:
    run_id = run_parallel(stack)
    missing = get(stack, f"/runs/{run_id}/steps/99")
    assert (missing.status, missing.error["type"]) == (404, "not_found")
    # and another owner's run's steps do not exist either
    other = get(stack, f"/runs/{run_id}/steps/0", token=auth_tokens.token("mallory"))
    assert other.status == 404


def test_mermaid_json_names_each_node_s_id_in_the_text(stack: ApiStack) -> None:
    graph = {"entry": "a b", "nodes": {"a b": {"tool": "emit"}, "style": {"tool": "emit"}},
             "edges": {"a b": "style", "style": "END"}}  # fmt: skip
    created = stack.call("http_create_graph", body=graph)
    assert created.status == 201, created.text
    graph_id = created.json()["graph_id"]
    doc = get(stack, f"/graphs/{graph_id}/mermaid", format="json").json()
    ids = doc["node_ids"]
    assert set(ids) == {"a b", "style", "END"}
    assert ids["a b"] != "a b" and ids["style"] != "style"  # not Mermaid ids as they are
    for node, mermaid_id in ids.items():
        assert f"    {mermaid_id}[" in doc["mermaid"] or node == "END"
    assert ids["END"] == "__end__"


def test_listed_runs_name_their_owner(stack: ApiStack) -> None:
    run_parallel(stack)
    items = get(stack, "/runs").json()["items"]
    assert [r["owner"] for r in items] == [auth_tokens.DEFAULT_USER]
