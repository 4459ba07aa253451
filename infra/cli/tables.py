"""The command line's tables: one line per row at any width, and ids never cut.

Each column says what it holds. An id column is as wide as its longest id; a time is shown
to the second (UTC), or to the minute without the year when that makes the row fit; text is
cut with an ellipsis, never wrapped (a row that spills onto a second line reads as two rows,
and ``| head`` cuts it in half). When the terminal is too narrow for the ids and the other
columns at their narrowest, optional columns are left out, last first (``--json`` always has
every field). A terminal narrower than the ids alone gets lines longer than itself rather
than a cut id.
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
"""id: copied by people, never cut; word, number: short, never cut; time: to the second, or
to the minute without the year; text: cut with an ellipsis."""

_TEXT_NARROWEST = 12
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
    Field("graph_id", "graph", "id", optional=True),  # runs list --graph-id filters by it
    Field("status", "status", "word"),
    Field("created_at", "created UTC", "time"),
    Field("updated_at", "updated UTC", "time", optional=True),
    Field("error", "error", optional=True),
)
GRAPHS = (
    Field("graph_id", "graph", "id"),
    Field("name", "name"),
    Field("created_at", "created UTC", "time"),
)
STEPS = (
    Field("seq", "step", "number"),
    Field("node", "node", "id"),  # node and tool names are identifiers too
    Field("tool", "tool", "id", optional=True),  # the graph names it for each node
    Field("status", "status", "word"),
    Field("duration_ms", "ms", "number"),
    Field("next", "next", "id", optional=True),
    Field("error", "error", optional=True),
)
TOOLS = (Field("name", "tool", "id"), Field("description", "description"))


def cell(value: Any, kind: Kind = "text", short: bool = False) -> str:
    """A value as the table shows it: ``-`` for nothing, times to the second (``short``: to
    the minute, without the year), text on one line."""
    if value is None:
        return "-"
    if kind == "time" and isinstance(value, str) and "T" in value:
        whole = value.replace("T", " ").rstrip("Z").split(".")[0]
        return whole[5:16] if short and len(whole) >= 16 else whole
    if kind == "number" and isinstance(value, float):
        return f"{value:.1f}"
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return " ".join(text.split()) if kind == "text" else text


def first_sentence(text: str) -> str:
    """``text`` up to the end of its first sentence (a description's summary line)."""
    flat = " ".join(text.split())
    for end in (". ", ".\n"):
        cut = flat.find(end)
        if cut >= 0:
            return flat[: cut + 1]
    return flat


@dataclass(frozen=True)
class _Layout:
    shown: list[int]
    short_times: bool
    widths: list[int]
    """Each shown column's width (text: what is left for it, at least its narrowest)."""

    @property
    def total(self) -> int:
        return sum(self.widths) + _GAP * (len(self.widths) - 1)


def table(rows: Sequence[dict[str, Any]], fields: Sequence[Field], width: int) -> Table:
    """``rows`` as a table of one line per row that fits ``width`` columns if it can without
    cutting an id; its ``min_width`` is what it needs when it cannot."""
    layout = _layout(rows, fields, width)
    cells = [
        [cell(row.get(fields[i].key), fields[i].kind, layout.short_times) for i in layout.shown]
        for row in rows
    ]
    grid = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        header_style="bold",
        min_width=layout.total,
    )
    for i, column_width in zip(layout.shown, layout.widths, strict=True):
        field = fields[i]
        grid.add_column(
            field.heading,
            justify="right" if field.kind == "number" else "left",
            no_wrap=True,
            overflow="ellipsis" if field.kind == "text" else "ignore",  # ids: never cut
            width=column_width,
        )
    for row in cells:
        grid.add_row(*row)
    return grid


def _layout(rows: Sequence[dict[str, Any]], fields: Sequence[Field], width: int) -> _Layout:
    """The columns to show and their widths: every column, times to the second, if they
    fit; else times to the minute; else the optional columns left out, last first, trying
    both again each time."""
    shown = list(range(len(fields)))
    optional = [i for i in shown if fields[i].optional]
    while True:
        for short in (False, True):
            layout = _fit(rows, fields, shown, short, width)
            if layout.total <= width or (not optional and short):
                return layout
        shown.remove(optional.pop())


def _fit(
    rows: Sequence[dict[str, Any]],
    fields: Sequence[Field],
    shown: list[int],
    short: bool,
    width: int,
) -> _Layout:
    natural = [
        max([len(fields[i].heading)] + [len(cell(r.get(fields[i].key), fields[i].kind, short))
                                        for r in rows])
        for i in shown
    ]  # fmt: skip
    texts = [n for n, i in enumerate(shown) if fields[i].kind == "text"]
    widths = [min(w, _TEXT_NARROWEST) if n in texts else w for n, w in enumerate(natural)]
    spare = width - (sum(widths) + _GAP * (len(widths) - 1))
    for n in texts:  # what is left goes to the text columns, in order, up to their natural width
        grow = max(0, min(spare, natural[n] - widths[n]))
        widths[n] += grow
        spare -= grow
    return _Layout(shown, short, widths)


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
