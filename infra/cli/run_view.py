"""``hopgraph runs show``: a run for people, a summary that fits the terminal.

Status, graph, times, steps, where it is (the node the next step runs), the error, and the
state's keys each with a short value on one line. ``--state`` prints the whole state as JSON,
``--json`` the whole run.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape

from infra.cli.inputs import plural

_STATUS_STYLE = {"completed": "green", "failed": "red", "cancelled": "yellow",
                 "paused": "yellow"}  # fmt: skip
_KEY_WIDTH = 24


def show_run(console: Console, run: dict[str, Any]) -> None:
    status = str(run.get("status", "?"))
    style = _STATUS_STYLE.get(status, "cyan")
    say = _printer(console)
    say(f"[bold]run {escape(str(run.get('run_id')))}[/]  [{style}]{escape(status)}[/]")
    say(f"  graph    {escape(str(run.get('graph_id')))}")
    parent = run.get("parent")
    if isinstance(parent, dict):
        say(f"  forked   from run {escape(str(parent.get('run_id')))} at step {parent.get('seq')}")
    say(f"  created  {_time(run.get('created_at'))}")
    say(f"  updated  {_time(run.get('updated_at'))}"
        + _took(run.get("created_at"), run.get("updated_at"), status))  # fmt: skip
    steps, limit = int(run.get("steps") or 0), run.get("max_steps")
    where = run.get("current_node")
    line = f"  steps    {plural(steps, 'step')}" + (f" (at most {limit})" if limit else "")
    if where:
        line += f"; next: [bold]{escape(str(where))}[/]"
    say(line)
    if run.get("error"):
        say(f"  [red]error[/]    {escape(str(run['error']))}")
    show_questions(console, run)
    state = run.get("state")
    if isinstance(state, dict):
        keys = plural(len(state), "key")
        say(f"state, {keys} (all of it: --state; the run as JSON: --json)")
        column = min(_KEY_WIDTH, max((len(k) for k in state), default=0))
        width = max(20, console.width - column - 4)
        for key in sorted(state):
            name = key if len(key) <= column else key[: column - 1] + "…"
            say(f"  {escape(name):<{column}}  {escape(short_value(state[key], width))}")


def show_questions(console: Console, run: dict[str, Any]) -> None:
    """A paused run's questions, each with the command that answers it."""
    say = _printer(console)
    pending = run.get("pending") or []
    for question in pending:
        say(f"  [bold yellow]waits[/]    {escape(question_line(question))}")
    if pending:
        say(f"  answer   {escape(resume_hint(str(run.get('run_id')), pending))}")


def question_line(question: dict[str, Any]) -> str:
    """One pending question: its task, prompt, and what an answer must be."""
    task, kind = question.get("task"), question.get("kind")
    if kind in ("before", "after"):
        return f"{task}: a breakpoint {kind} it (resume with no value)"
    schema = question.get("schema") or {}
    wants = f" (answer: {schema['type']})" if isinstance(schema.get("type"), str) else ""
    until = f", until {_time(question['until'])}" if question.get("until") else ""
    return f"{task}: {question.get('prompt') or 'an answer'}{wants}{until}"


def resume_hint(run_id: str, pending: list[dict[str, Any]]) -> str:
    first = pending[0]
    task = f" --task {first.get('task')}" if len(pending) > 1 else ""
    if first.get("kind") in ("before", "after"):
        return f"hopgraph runs resume {run_id}{task}"
    return f"hopgraph runs resume {run_id}{task} --value JSON"


def short_value(value: Any, width: int) -> str:
    """``value`` on one line of at most ``width`` characters: text, numbers and short JSON
    as they are, a long string cut with its length, a list or object by its size."""
    if isinstance(value, str):
        flat = " ".join(value.split())
        text = json.dumps(flat, ensure_ascii=False)
        if len(text) <= width and flat == value:
            return text
        return _cut(text, width - len(f" ({len(value)} chars)")) + f" ({len(value)} chars)"
    text = json.dumps(value, default=str, ensure_ascii=False)
    if len(text) <= width:
        return text
    if isinstance(value, list):
        return _cut(text, width - len(f" ({plural(len(value), 'item')})")) + (
            f" ({plural(len(value), 'item')})"
        )
    if isinstance(value, dict):
        return _cut(text, width - len(f" ({plural(len(value), 'key')})")) + (
            f" ({plural(len(value), 'key')})"
        )
    return _cut(text, width)


def _cut(text: str, width: int) -> str:
    width = max(8, width)
    return text if len(text) <= width else text[: width - 1] + "…"


def _time(value: Any) -> str:
    if not isinstance(value, str):
        return "-"
    return value.replace("T", " ").rstrip("Z").split(".")[0] + " UTC"


def _took(created: Any, updated: Any, status: str) -> str:
    """How long a finished run took (from its start to its last change)."""
    if status == "running" or not isinstance(created, str) or not isinstance(updated, str):
        return ""
    try:
        seconds = (_parse(updated) - _parse(created)).total_seconds()
    except ValueError:
        return ""
    return f" (took {seconds:.1f} s)" if seconds < 120 else f" (took {seconds / 60:.1f} min)"


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _printer(console: Console) -> Any:
    def say(text: str) -> None:
        console.print(text, highlight=False, soft_wrap=True)

    return say
