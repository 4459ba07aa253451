"""The command line's tables: ids are copied from them, so an id is never wrapped or cut.

Each column says what it holds. An id column is as wide as its longest id and never wraps;
a time is shown to the second (UTC) and may wrap between date and time; text wraps. When
the terminal is too narrow for the ids and the other columns at their narrowest, optional
columns are left out, last first (``--json`` always has every field). A terminal narrower
than the ids alone gets lines longer than itself rather than a cut id.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rich import box
from rich.console import Console
from rich.table import Table

Kind = Literal["id", "word", "number", "time", "text"]
"""id: copied by people, never wrapped; word, number: short, never wrapped; time: wraps
between date and time at most; text: wraps anywhere."""

_WHOLE = ("id", "word", "number")
_NARROWEST = {"time": len("2025-01-15"), "text": 12}  # a time wraps between date and time
_GAP = 3  # between two cells: the padding on each side and the (blank) column rule


@dataclass(frozen=True, slots=True)
class Field:
    """One column: the row's ``key``, its heading, what kind of value, and whether it may be
    left out of a narrow terminal."""

    key: str
    heading: str
    kind: Kind = "text"
    optional: bool = False


RUNS = (
    Field("run_id", "run", "id"),
    Field("graph_id", "graph", "id"),
    Field("status", "status", "word"),
    Field("created_at", "created (UTC)", "time"),
    Field("updated_at", "updated (UTC)", "time", optional=True),
    Field("error", "error", optional=True),
)
GRAPHS = (
    Field("graph_id", "graph", "id"),
    Field("name", "name"),
    Field("created_at", "created (UTC)", "time"),
)
STEPS = (
    Field("seq", "step", "number"),
    Field("node", "node", "id"),  # node and tool names are identifiers too
    Field("tool", "tool", "id"),
    Field("status", "status", "word"),
    Field("duration_ms", "ms", "number"),
    Field("next", "next", "id"),
    Field("error", "error", optional=True),
)
TOOLS = (Field("name", "tool", "id"), Field("description", "description"))


def cell(value: Any, kind: Kind = "text") -> str:
    """A value as the table shows it: ``-`` for nothing, times to the second."""
    if value is None:
        return "-"
    if kind == "time" and isinstance(value, str) and "T" in value:
        return value.replace("T", " ").rstrip("Z").split(".")[0]
    if kind == "number" and isinstance(value, float):
        return f"{value:.1f}"
    return value if isinstance(value, str) else json.dumps(value, default=str)


def table(rows: Sequence[dict[str, Any]], fields: Sequence[Field], width: int) -> Table:
    """``rows`` as a table that fits ``width`` columns if it can without touching an id;
    its ``min_width`` is what it needs when it cannot."""
    cells = [[cell(row.get(f.key), f.kind) for f in fields] for row in rows]
    widths = [max([len(f.heading)] + [len(r[i]) for r in cells]) for i, f in enumerate(fields)]
    # Times whole if leaving out optional columns makes room; wrapped only if nothing else does.
    shown, narrowest = _layout(fields, widths, width, wrap_times=False)
    if _width(narrowest, shown) > width:
        shown, narrowest = _layout(fields, widths, width, wrap_times=True)
    grid = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        header_style="bold",
        min_width=_width(narrowest, shown),
    )
    for i in shown:
        field = fields[i]
        whole = field.kind in _WHOLE or narrowest[i] == widths[i]
        if field.kind == "number":  # rich does not right-justify an "ignore" overflow
            grid.add_column(field.heading, justify="right", no_wrap=True, min_width=widths[i])
            continue
        grid.add_column(
            field.heading,
            no_wrap=whole,
            overflow="ignore" if whole else "fold",  # whole: never cut, even if rich ran short
            min_width=narrowest[i],
        )
    for row in cells:
        grid.add_row(*(row[i] for i in shown))
    return grid


def _layout(
    fields: Sequence[Field], widths: list[int], width: int, wrap_times: bool
) -> tuple[list[int], list[int]]:
    """The columns to show (optional ones left out, last first, until the rest fits) and
    each column's narrowest width."""
    wraps = ("text", "time") if wrap_times else ("text",)
    narrowest = [
        min(w, _NARROWEST[f.kind]) if f.kind in wraps else w
        for f, w in zip(fields, widths, strict=True)
    ]
    shown = list(range(len(fields)))
    optional = [i for i in shown if fields[i].optional]
    while optional and _width(narrowest, shown) > width:
        shown.remove(optional.pop())
    return shown, narrowest


def _width(narrowest: list[int], shown: list[int]) -> int:
    return sum(narrowest[i] for i in shown) + _GAP * (len(shown) - 1)


def print_table(console: Console, rows: Sequence[dict[str, Any]], fields: Sequence[Field]) -> None:
    """Print ``rows``; wider than the terminal only when the ids alone are."""
    if not rows:
        console.print("(none)", style="dim", highlight=False)
        return
    grid = table(rows, fields, console.width)
    if (grid.min_width or 0) <= console.width:
        console.print(grid)
        return
    # Rich never prints wider than its console, and would cut the ids: a wider one, same output.
    wider = Console(
        file=console.file,
        width=grid.min_width,
        force_terminal=console.is_terminal,
        color_system=console.color_system,  # type: ignore[arg-type]  # the same name back
        no_color=console.no_color,
    )
    wider.print(grid, crop=False)
