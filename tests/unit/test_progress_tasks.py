"""The run display names every task of a superstep that runs several."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from engine.runner import InProcessRunner
from engine.toolkits.basics import toolkit as basics
from engine.validation import build_graph
from infra.cli.progress import RunProgress

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "parallel_research.json"


def rendered(events: list[dict[str, object]]) -> str:
    out = io.StringIO()
    progress = RunProgress(Console(file=out, width=80), show_state=False)
    for event in events:
        progress.event(event)
    return out.getvalue()


def test_in_process_tasks_of_one_superstep_each_get_a_line() -> None:
    # Given the task events of an in-process run (tasks of a superstep share its seq)
    events: list[dict[str, object]] = []
    graph = build_graph(json.loads(EXAMPLE.read_text()), basics.names())
    InProcessRunner(basics, on_event=events.append).run(graph, {"docs": ["a", "b"]})
    # When they are shown, Then every task has its line, repeats none
    text = rendered(events + events)
    for task in ("plan", "grade[0]", "grade[1]", "search", "read", "write"):
        assert text.count(f"  {task} (") == 1, (task, text)


def test_a_durable_superstep_lists_its_tasks() -> None:
    tasks = [
        {"task": f"grade[{i}]", "node": "grade", "index": i, "tool": "fill",
         "status": "ok", "duration_ms": 1.0}
        for i in range(10)
    ]  # fmt: skip
    step = {"type": "step", "seq": 1, "node": "grade", "tool": "fill", "status": "ok",
            "updates": {}, "duration_ms": 10.0, "next": ["write"], "tasks": tasks}  # fmt: skip
    text = rendered([step])
    assert "grade[0] (fill)" in text and "grade[7] (fill)" in text
    assert "grade[8]" not in text and "... and 2 more tasks" in text


def test_the_final_state_shortens_lists_only_when_that_saves_lines() -> None:
    from infra.cli.progress import shorten

    # A list of six is shown whole: "... 1 more" would take the line the sixth item takes
    assert shorten(list(range(6))) == list(range(6))
    # A longer one shows its first five, then how many more
    assert shorten(list(range(9))) == [0, 1, 2, 3, 4, "... 4 more"]
