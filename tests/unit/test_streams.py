"""Token events of a streaming model node (engine/streams.py): batched at most every 100 ms
or 1 KB, each within the WebSocket's 128 KB, published before the step that commits the
whole message; the CLI prints them as they come."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from engine.events import MESSAGE_LIMIT
from engine.messages import text_of
from engine.runner import InProcessRunner
from engine.streams import MAX_BYTES, TokenBatcher, channel
from engine.tools import ToolContext, load_toolkits
from engine.validation import build_graph

ANSWER = "Streaming " * 300  # 3,000 characters: several 1 KB batches


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_tokens_are_batched_by_time_and_by_size() -> None:
    sent: list[dict[str, Any]] = []
    clock = Clock()
    ctx = ToolContext("r1", "agent", 4)
    batcher = TokenBatcher(
        lambda run, events, audience: sent.extend(events), ctx, clock, lambda: 0.0
    )
    batcher("Hel")
    batcher("lo")
    assert sent == []  # neither 100 ms nor 1 KB yet
    clock.now = 0.1
    batcher(",")
    assert [e["text"] for e in sent] == ["Hello,"]
    batcher("x" * MAX_BYTES)  # 1 KB at once: out without waiting
    assert len(sent) == 2 and sent[1]["text"] == "x" * MAX_BYTES
    batcher(" end")
    batcher.flush()
    assert [e["part"] for e in sent] == [0, 1, 2] and sent[2]["text"] == " end"
    assert {(e["type"], e["run_id"], e["seq"], e["task"]) for e in sent} == {
        ("token", "r1", 4, "agent")
    }


def test_a_huge_piece_is_cut_to_fit_a_websocket_message() -> None:
    sent: list[dict[str, Any]] = []
    batcher = TokenBatcher(
        lambda run, events, audience: sent.extend(events), ToolContext("r", "n", 0)
    )
    batcher("y" * (300 * 1024))
    batcher.flush()
    assert "".join(e["text"] for e in sent) == "y" * (300 * 1024)
    assert all(len(json.dumps(e).encode()) < MESSAGE_LIMIT for e in sent)


@pytest.fixture()
def bound() -> Iterator[list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    channel.bind(lambda run, batch, audience: events.extend(batch))
    yield events
    channel.bind(None)


def test_a_streaming_node_sends_tokens_before_its_step(bound: list[dict[str, Any]]) -> None:
    tools = load_toolkits(["engine.toolkits.basics", "functions.models.toolkit"])
    doc = {
        "entry": "ask",
        "nodes": {"ask": {"llm": {"stream": True, "responses": [ANSWER]}}},
        "edges": {"ask": "END"},
    }
    runner = InProcessRunner(tools, on_event=bound.append)
    result = runner.run(build_graph(doc, tools.names(), toolkit=tools), {"messages": ["go"]})
    assert result.status == "completed", result.error
    kinds = [e["type"] for e in bound]
    tokens = [e for e in bound if e["type"] == "token"]
    assert len(tokens) >= 3 and kinds.index("step") > max(
        i for i, k in enumerate(kinds) if k == "token"
    )
    assert "".join(e["text"] for e in tokens) == ANSWER == text_of(result.state["messages"][-1])
    # a node that does not stream sends none
    bound.clear()
    doc["nodes"]["ask"]["llm"]["stream"] = False
    runner.run(build_graph(doc, tools.names(), toolkit=tools), {"messages": ["go"]})
    assert not [e for e in bound if e["type"] == "token"]


def test_the_cli_prints_tokens_as_they_come() -> None:
    from io import StringIO

    from rich.console import Console

    from infra.cli.progress import RunProgress

    out = StringIO()
    progress = RunProgress(Console(file=out, width=200), show_state=False)
    for part, text in enumerate(["The ans", "wer is ", "42."]):
        progress.event(
            {"type": "token", "run_id": "r", "seq": 0, "task": "ask", "part": part, "text": text}
        )
    progress.event(
        {
            "type": "step",
            "run_id": "r",
            "seq": 0,
            "node": "ask",
            "tool": "llm",
            "status": "ok",
            "updates": {"messages": []},
            "duration_ms": 1.0,
        }
    )
    lines = out.getvalue().splitlines()
    assert lines[0] == "ask: The answer is 42."
    assert lines[1].startswith("step   0  ask (llm)")


def test_the_subscribers_are_read_every_few_seconds_not_every_batch() -> None:
    clock = Clock()
    reads: list[str] = []
    audiences: list[Any] = []

    def subscribers(run_id: str) -> list[str]:
        reads.append(run_id)
        return [f"c{len(reads)}"]

    batcher = TokenBatcher(
        lambda run, events, audience: audiences.append(audience),
        ToolContext("r9", "n", 0),
        clock,
        lambda: 0.0,
        subscribers,
    )
    for step in range(30):  # three seconds of batches, one every 100 ms
        clock.now = step * 0.1
        batcher("x")
    assert reads == ["r9", "r9"] and len(audiences) > 10  # many batches, two reads
    assert audiences[0].subscribers == ("c1",) and audiences[-1].subscribers == ("c2",)
