"""The research agent on the local stack, offline: its scripted model and its tools run in
the stack's workers, one durable hop per model call and per tool call, and a follower sees
the streaming model's tokens over the WebSocket before each step commits.

And Bedrock for real when credentials are present (skipped otherwise, never faked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stack import StackProcess, launch

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "research_agent.json"
HOPGRAPH = str(Path(sys.executable).parent / "hopgraph")


@pytest.fixture(scope="module")
def stack() -> Iterator[StackProcess]:
    started = launch("sqs")
    try:
        yield started
    finally:
        started.kill()


def test_the_research_agent_streams_and_answers_on_the_local_stack(
    stack: StackProcess, tmp_path: Path
) -> None:
    # Given the example with its model streaming
    doc = json.loads(EXAMPLE.read_text())
    doc["nodes"]["researcher"]["agent"]["stream"] = True
    # Tokens are a preview, never replayed: the model steps wait for the follower to be
    # subscribed (a first step of 3 s; the follower subscribes as soon as the run starts).
    doc["nodes"]["settle"] = {"tool": "wait", "settings": {"ms": 3000}}
    doc["edges"]["settle"] = doc["entry"]
    doc["entry"] = "settle"
    graph = tmp_path / "research_agent_streaming.json"
    graph.write_text(json.dumps(doc))
    # When the CLI runs it on the stack and follows it, one JSON event a line
    env = {k: v for k, v in os.environ.items() if k not in ("HOPGRAPH_LLM", "PYTHONPATH")}
    command = [
        HOPGRAPH,
        "--api",
        stack.api,
        "--ws",
        stack.ws,
        "--json",
        "run",
        str(graph),
        "--follow",
    ]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    # Then it completes with the answer: wait, then model, tools, model, tools, model
    final = events[-1]
    assert (final["type"], final["status"], final["steps"]) == ("run", "completed", 6)
    assert final["state"]["answer"].startswith("A Lambda function runs for at most 15 minutes")
    # and each model step's text came as tokens, before its step
    kinds = [(e["type"], e.get("seq")) for e in events if e["type"] in ("token", "step")]
    for seq in (1, 3, 5):
        assert ("token", seq) in kinds, kinds
        assert kinds.index(("token", seq)) < kinds.index(("step", seq)), kinds
    streamed = "".join(e["text"] for e in events if e["type"] == "token" and e["seq"] == 5)
    assert streamed == final["state"]["answer"]
    # and the run's usage is totalled by the API
    import httpx

    run = httpx.get(f"{stack.api}/runs/{final['run_id']}", timeout=10).json()
    assert run["usage"]["calls"] == 3 and run["usage"]["output_tokens"] > 0


def _aws_credentials() -> bool:
    try:
        import boto3

        return boto3.session.Session().get_credentials() is not None
    except Exception:
        return False


@pytest.mark.skipif(
    not (_aws_credentials() and os.environ.get("HOPGRAPH_BEDROCK_TEST_MODEL")),
    reason="Bedrock needs AWS credentials and HOPGRAPH_BEDROCK_TEST_MODEL (a model id the "
    "account may invoke); never faked",
)
def test_the_research_agent_on_bedrock() -> None:
    # Given the example on Bedrock, with the model the environment names
    env = {
        **os.environ,
        "HOPGRAPH_LLM": "bedrock",
        "HOPGRAPH_LLM_MODEL": os.environ["HOPGRAPH_BEDROCK_TEST_MODEL"],
    }
    command = [HOPGRAPH, "--json", "run", str(EXAMPLE), "--local"]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    # Then a real model answers, through at least one tool call
    assert result["status"] == "completed", result["error"]
    calls = [b for m in result["state"]["messages"] for b in m["content"] if "toolUse" in b]
    assert calls and result["state"]["answer"]
