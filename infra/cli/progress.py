"""The command line's live view of a run: one line per step as it commits, then the result."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.status import Status

from infra.cli.inputs import plural
from infra.cli.run_view import question_line, resume_hint

_STATUS_STYLE = {"ok": "green", "failed": "red", "cancelled": "yellow"}
_NAME_WIDTH = 30  # "node (tool)" of most graphs
_TASKS_SHOWN = 8  # a map of 100 lists its first tasks, then how many more


class RunProgress:
    """Renders step and run events; a spinner shows the step being waited for."""

    def __init__(self, console: Console, *, show_state: bool = True) -> None:
        self.console = console
        self.show_state = show_state
        self.final: dict[str, Any] | None = None
        self._seen: set[tuple[int, str | None]] = set()
        self._spinner: Status | None = None
        self._streaming = False

    def __enter__(self) -> RunProgress:
        if self.console.is_terminal:
            self._spinner = self.console.status("waiting for the first step...")
            self._spinner.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._spinner is not None:
            self._spinner.stop()

    def record(self, event: dict[str, Any]) -> bool:
        """Note ``event`` without rendering it; False if it is a repeat already seen."""
        if event.get("type") == "run" and event.get("status") != "running":
            self.final = event
        if event.get("type") == "step":
            # A superstep is one event on the durable path; in process, each of its tasks is
            # one (they share the seq and differ by ``task``).
            key = (int(event.get("seq", -1)), event.get("task"))
            if key in self._seen:
                return False
            self._seen.add(key)
        return True

    def event(self, event: dict[str, Any]) -> None:
        if not self.record(event):  # events are at-least-once; a backfilled step may repeat
            return
        if event.get("type") == "step":
            self._tokens_end()
            self._step(event)
        elif event.get("type") == "run":
            self._tokens_end()
            self._run(event)
        elif event.get("type") == "token":  # a streaming model's text, as it writes
            if not self._streaming:
                self.console.print(f"[dim]{event.get('task')}:[/] ", end="", highlight=False)
                self._streaming = True
            self.console.print(str(event.get("text", "")), end="", markup=False, highlight=False)

    def _tokens_end(self) -> None:
        if self._streaming:
            self.console.print()
            self._streaming = False

    def _step(self, event: dict[str, Any]) -> None:
        seq = int(event.get("seq", -1))
        status = str(event.get("status", "?"))
        style = _STATUS_STYLE.get(status, "white")
        duration = float(event.get("duration_ms") or 0.0)
        node, tool = event.get("task") or event.get("node"), event.get("tool")
        pad = " " * max(0, _NAME_WIDTH - len(f"{node} ({tool})"))  # durations line up
        head = f"step {seq:>3}  {node} ({tool}){pad}  {duration:8.1f} ms  {status}  updates: "
        keys = fit_keys(sorted(event.get("updates") or {}), self.console.width - len(head))
        self.console.print(
            f"[dim]step[/] {seq:>3}  [bold]{node}[/] ({tool}){pad}  {duration:8.1f} ms  "
            f"[{style}]{status}[/]  [dim]updates: {keys}[/]",
            highlight=False,
            soft_wrap=True,  # a long node name makes a long line, never a broken one
        )
        self._tasks(event.get("tasks") or [], int(event.get("tasks_total") or 0))
        if event.get("error"):
            self.console.print(f"      [red]{event['error']}[/]", highlight=False)
        if self._spinner is not None:
            self._spinner.update(f"step {seq} done; waiting for step {seq + 1}...")

    def _tasks(self, tasks: list[dict[str, Any]], total: int = 0) -> None:
        """The tasks of a superstep that ran several, one line each (the first few)."""
        for task in tasks[:_TASKS_SHOWN]:
            status = str(task.get("status", "?"))
            style = _STATUS_STYLE.get(status, "white")
            self.console.print(
                f"      {task.get('task')} ({task.get('tool')})  "
                f"{float(task.get('duration_ms') or 0.0):8.1f} ms  [{style}]{status}[/]",
                highlight=False,
                soft_wrap=True,
            )
        total = max(total, len(tasks))
        if total > _TASKS_SHOWN:
            self.console.print(f"      ... and {total - _TASKS_SHOWN} more tasks")

    def _run(self, event: dict[str, Any]) -> None:
        status = event.get("status")
        if status == "running":
            return
        if self._spinner is not None:
            self._spinner.stop()
        if status == "paused":
            self._paused(event)
            return
        style = "green" if status == "completed" else "red"
        steps = plural(int(event.get("steps") or 0), "step")
        self.console.print(f"[{style}]run {status}[/] after {steps}", highlight=False)
        if event.get("reason"):
            self.console.print(f"reason: {event['reason']}", highlight=False)
        if self.show_state and event.get("state") is not None:
            self.console.print("final state (long values shortened):", highlight=False)
            # a JSON string cannot wrap: cut long ones so that most lines fit the terminal
            preview = shorten(event["state"], text=max(24, self.console.width - 48))
            self.console.print_json(json.dumps(preview, default=str))
            if event.get("truncated"):  # cut to fit one WebSocket message (128 KB)
                where = event.get("fetch", "GET /runs/{id}")
                self.console.print(f"[dim]the whole state: {where}[/]", highlight=False)
        if event.get("state") is not None:  # a model's answer, in full
            from infra.cli.answers import last_answers

            for key, text in last_answers(event["state"]):
                self.console.print(f"[bold]answer[/] ({key}): {text}", highlight=False)

    def _paused(self, event: dict[str, Any]) -> None:
        """A paused run: its questions, and how to answer them (following ends here)."""
        pending = event.get("pending") or []
        self.console.print("[yellow]run paused[/]: it waits for an answer", highlight=False)
        for question in pending:
            self.console.print(f"  {question_line(question)}", highlight=False, markup=False)
        if pending:
            hint = resume_hint(str(event.get("run_id")), pending)
            self.console.print(f"answer: {hint}", highlight=False, markup=False)


def fit_keys(keys: list[str], width: int) -> str:
    """The updated keys, as many as fit in ``width`` columns, then how many more (``--json``
    and ``runs logs --json`` have them all)."""
    if not keys:
        return "-"
    cut = [f"{', '.join(keys[:n])}, +{len(keys) - n} more" for n in range(len(keys) - 1, 0, -1)]
    candidates = [", ".join(keys), *cut, plural(len(keys), "key")]
    return next((text for text in candidates if len(text) <= width), candidates[-1])


def shorten(value: Any, text: int = 160, items: int = 5) -> Any:
    """A readable preview of a state: long strings cut, long lists summarised."""
    if isinstance(value, str) and len(value) > text:
        return f"{value[:text]}... ({len(value)} chars)"
    if isinstance(value, list):
        if len(value) <= items + 1:  # "... 1 more" would take the line the item takes
            return [shorten(v, text, items) for v in value]
        head = [shorten(v, text, items) for v in value[:items]]
        return [*head, f"... {len(value) - items} more"]
    if isinstance(value, dict):
        return {k: shorten(v, text, items) for k, v in value.items()}
    return value
