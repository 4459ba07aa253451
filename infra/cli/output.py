"""What the command line prints: data (JSON) on stdout, lines for people, tables, and notes
and errors on stderr."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape

from infra.cli.tables import Field, print_table


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """Leave a closed pipe (``| head``) to ``main``, which ends quietly."""
        raise BrokenPipeError


class Output:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.console: Console = _Console()

    def data(self, value: Any) -> None:
        print(json.dumps(value, indent=2, default=str))

    def say(self, text: str) -> None:
        """A line for people (rich markup); nothing in JSON mode, where stdout is data."""
        if not self.as_json:
            self.console.print(text, highlight=False)

    def table(self, rows: list[dict[str, Any]], fields: tuple[Field, ...]) -> None:
        if self.as_json:
            self.data(rows)
        else:
            print_table(self.console, rows, fields)


def note(text: str) -> None:
    Console(stderr=True).print(text, highlight=False, markup=False)


def error(text: str, command: str | None = None) -> None:
    """``error: TEXT`` on stderr, and a command to copy, never broken over two lines."""
    console = Console(stderr=True)
    console.print(f"[red]error:[/] {escape(text)}", highlight=False)
    if command:
        console.print(f"  {command}", highlight=False, markup=False, soft_wrap=True)
