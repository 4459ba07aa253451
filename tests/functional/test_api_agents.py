"""The research agent through the deployment's handlers on moto: ``/tools`` shows the input
schemas a model sees, the run goes hop by hop through the step queue and the worker (each
model call and each tool call a durable task), and ``GET /runs/{id}`` totals the model
calls' usage and prices them from the configured table."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from functions.models.prices import PRICES_ENV, configured_prices
from tests.functional.api_harness import ApiStack, api_stack

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "research_agent.json"
MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
TOOLKITS = "engine.toolkits.basics,engine.toolkits.research,functions.models.toolkit"


@pytest.fixture(scope="module")
def stack() -> Iterator[ApiStack]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        prices = {MODEL: {"input_per_million": 1_000_000, "output_per_million": 2_000_000}}
        monkeypatch.setenv(PRICES_ENV, json.dumps(prices))  # a dollar a token: easy sums
        configured_prices.cache_clear()
        with api_stack(monkeypatch, toolkits=TOOLKITS) as s:
            yield s
        configured_prices.cache_clear()


def test_tools_shows_the_input_schema_a_model_sees(stack: ApiStack) -> None:
    tools = {t["name"]: t for t in stack.call("http_list_tools").json()["tools"]}
    assert tools["calculator"]["input_schema"] == {
        "type": "object",
        "properties": {"expression": {"type": "string"}},
        "required": ["expression"],
    }
    assert tools["search_docs"]["input_schema"]["required"] == ["query"]
    assert tools["emit"].get("input_schema") is None


def test_the_research_agent_runs_hop_by_hop_and_its_usage_is_totalled(stack: ApiStack) -> None:
    created = stack.call("http_create_graph", body=json.loads(EXAMPLE.read_text()))
    assert created.status == 201, created.text
    started = stack.call(
        "http_start_run", body={"graph_id": created.json()["graph_id"], "input": {}}
    )
    assert started.status == 202, started.text
    run_id = started.json()["run_id"]
    stack.drain()
    run = stack.call("http_get_run", path=f"/runs/{run_id}").json()
    assert run["status"] == "completed", run["error"]
    assert run["state"]["answer"].startswith("A Lambda function runs for at most 15 minutes")
    steps = stack.call("http_run_steps", path=f"/runs/{run_id}/steps").json()["items"]
    assert [s["node"] for s in steps if s.get("node")][:1] == ["researcher"]
    usage = run["usage"]
    assistant = [m["metadata"] for m in run["state"]["messages"] if m["role"] == "assistant"]
    assert usage["calls"] == 3 == len(assistant)
    assert usage["input_tokens"] == sum(m["input_tokens"] for m in assistant)
    assert usage["output_tokens"] == sum(m["output_tokens"] for m in assistant)
    cost = usage["input_tokens"] + 2 * usage["output_tokens"]
    assert usage["estimated_cost_usd"] == cost and usage["unpriced_models"] == []


def test_approving_the_calculators_calls_pauses_the_run_and_a_resume_answers_per_call(
    stack: ApiStack,
) -> None:
    doc = json.loads(EXAMPLE.read_text())
    doc["nodes"]["researcher"]["agent"]["approve_tools"] = ["calculator"]
    graph_id = stack.call("http_create_graph", body=doc).json()["graph_id"]
    started = stack.call("http_start_run", body={"graph_id": graph_id, "input": {}})
    run_id = started.json()["run_id"]
    stack.drain()  # the searches run; the calculator's calls wait
    run = stack.call("http_get_run", path=f"/runs/{run_id}").json()
    assert run["status"] == "paused" and not stack.queued()
    (question,) = run["pending"]
    assert question["key"] == "researcher_review"
    assert 'call_queue: calculator({"expression": "6 * 900 / 60"})' in question["prompt"]
    path = f"/runs/{run_id}/resume"
    refused = stack.call("http_resume_run", path=path, body={"value": {"calls": {}}})
    assert refused.status == 422, refused.text
    answered = stack.call("http_resume_run", path=path)  # events/http_resume_run.json's answer
    assert answered.status == 200, answered.text
    stack.drain()
    run = stack.call("http_get_run", path=f"/runs/{run_id}").json()
    assert run["status"] == "completed", run["error"]
    results = {
        b["toolResult"]["toolUseId"]: b["toolResult"]
        for m in run["state"]["messages"]
        for b in m["content"]
        if "toolResult" in b
    }
    assert results["call_minutes"]["content"] == [{"json": {"result": 15}}]
    assert results["call_queue"]["status"] == "error"
    assert "use the documented figure" in results["call_queue"]["content"][0]["text"]
