"""The command line's tables never wrap or cut an id, whatever the terminal's width; on a
narrow one they leave out optional columns and wrap times and text instead."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from rich.console import Console

from infra.cli.tables import GRAPHS, RUNS, STEPS, TOOLS, Field, print_table

RUN_IDS = ["r_0f3c9a1b2c3d4e5f60718293", "r_a1b2c3d4e5f60718293a4b5c"]  # as RandomIds makes
GRAPH_ID = "g_8d1e2f3a4b5c6d7e8f90"
RUNS_ROWS = [
    {
        "run_id": run_id,
        "graph_id": GRAPH_ID,
        "status": status,
        "error": error,
        "created_at": "2025-01-15T09:30:00.000Z",
        "updated_at": "2025-01-15T09:30:02.500Z",
    }
    for run_id, status, error in [
        (RUN_IDS[0], "completed", None),
        (RUN_IDS[1], "failed", "node 'improve' failed: tool improve_code raised ValueError"),
    ]
]


def render(rows: list[dict[str, Any]], fields: tuple[Field, ...], width: int) -> list[str]:
    """The table's lines as a terminal of ``width`` columns shows them."""
    out = io.StringIO()
    print_table(Console(file=out, width=width, force_terminal=False), rows, fields)
    return out.getvalue().splitlines()


@pytest.mark.parametrize("width", [80, 100, 120, 200])
def test_run_ids_are_whole_and_lines_fit_the_terminal(width: int) -> None:
    # Given runs, with ids as long as the API makes them
    # When they are listed at a terminal's width
    lines = render(RUNS_ROWS, RUNS, width)
    # Then each id is whole on one line, and no line is wider than the terminal
    for run_id in RUN_IDS:
        assert sum(run_id in line for line in lines) == 1, "\n".join(lines)
    assert sum(GRAPH_ID in line for line in lines) == 2
    assert max(len(line) for line in lines) <= width


def test_at_80_columns_optional_columns_go_and_times_wrap() -> None:
    # Given runs with an error and two times each
    # When they are listed at 80 columns
    lines = render(RUNS_ROWS, RUNS, 80)
    # Then the headings are run, graph, status and created; the date and time wrap
    assert lines[0].split() == ["run", "graph", "status", "created", "(UTC)"]
    assert re.search(rf"^{RUN_IDS[0]}\s+{GRAPH_ID}\s+completed\s+2025-01-15\s*$", lines[2])
    assert lines[3].strip() == "09:30:00"


def test_a_wide_terminal_shows_every_column_on_one_line() -> None:
    # Given the same runs
    # When they are listed at 200 columns
    lines = render(RUNS_ROWS, RUNS, 200)
    # Then every field is there, a row per line, times to the second
    assert lines[0].split()[-3:] == ["updated", "(UTC)", "error"]
    assert len(lines) == 2 + len(RUNS_ROWS)
    assert "2025-01-15 09:30:00   2025-01-15 09:30:02   node 'improve' failed" in lines[3]


def test_a_terminal_narrower_than_the_ids_gets_long_lines_not_cut_ids() -> None:
    # Given a 40-column terminal, narrower than a run id and a graph id side by side
    # When runs are listed
    lines = render(RUNS_ROWS, RUNS, 40)
    # Then the ids are still whole, each on its row's line
    for run_id in RUN_IDS:
        assert any(line.startswith(f"{run_id}   {GRAPH_ID}") for line in lines), lines


def test_steps_and_tools_keep_their_names_whole_at_80_columns() -> None:
    # Given a step with a long error and a tool with a long description
    step = {
        "seq": 12, "node": "suggest", "tool": "suggest_improvements", "status": "failed",
        "duration_ms": 3.25, "next": None, "error": "ValueError: " + "x" * 90,
    }  # fmt: skip
    tool = {"name": "suggest_improvements", "description": "Suggest improvements. " * 8}
    # When each is shown at 80 columns
    steps, tools = render([step], STEPS, 80), render([tool], TOOLS, 80)
    # Then the names are whole, the long text wraps, and every line fits
    assert "suggest_improvements" in steps[2] and "3.2" in steps[2]
    assert tools[2].startswith("suggest_improvements   Suggest improvements.")
    assert max(len(line) for line in steps + tools) <= 80


def test_no_rows_say_so() -> None:
    assert render([], GRAPHS, 80) == ["(none)"]
