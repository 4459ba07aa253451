"""The command line's tables: one line per row, whatever the terminal's width, and ids never
wrapped or cut; on a narrow terminal they shorten times, leave out optional columns and cut
text with an ellipsis instead."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from rich.console import Console

from infra.cli.tables import GRAPHS, RUNS, STEPS, TOOLS, Field, first_sentence, print_table

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


@pytest.mark.parametrize("width", [60, 80, 100, 120, 200])
def test_each_row_is_one_line_that_fits_with_its_id_whole(width: int) -> None:
    # Given runs, with ids as long as the API makes them
    # When they are listed at a terminal's width
    lines = render(RUNS_ROWS, RUNS, width)
    # Then the heading, the rule, and one line per run, each id whole, no line too wide
    assert len(lines) == 2 + len(RUNS_ROWS), "\n".join(lines)
    for run_id, line in zip(RUN_IDS, lines[2:], strict=True):
        assert line.startswith(run_id + " "), "\n".join(lines)
    assert max(len(line) for line in lines) <= width


def test_at_80_columns_times_shorten_and_optional_columns_go() -> None:
    # Given runs with an error and two times each
    # When they are listed at 80 columns
    lines = render(RUNS_ROWS, RUNS, 80)
    # Then the headings are run, graph, status and created; times to the minute, on the row
    assert lines[0].split() == ["run", "graph", "status", "created", "UTC"]
    assert re.search(rf"^{RUN_IDS[0]}\s+{GRAPH_ID}\s+completed\s+01-15 09:30\s*$", lines[2])


def test_at_60_columns_the_graph_goes_and_times_are_whole() -> None:
    lines = render(RUNS_ROWS, RUNS, 60)
    assert lines[0].split() == ["run", "status", "created", "UTC"]
    assert re.search(rf"^{RUN_IDS[1]}\s+failed\s+2025-01-15 09:30:00$", lines[3]), lines


def test_a_wide_terminal_shows_every_column_on_one_line() -> None:
    # Given the same runs
    # When they are listed at 200 columns
    lines = render(RUNS_ROWS, RUNS, 200)
    # Then every field is there, a row per line, times to the second
    assert lines[0].split()[-3:] == ["updated", "UTC", "error"]
    assert len(lines) == 2 + len(RUNS_ROWS)
    assert "2025-01-15 09:30:00   2025-01-15 09:30:02   node 'improve' failed" in lines[3]


def test_a_terminal_narrower_than_the_ids_gets_long_lines_not_cut_ids() -> None:
    # Given a 20-column terminal, narrower than a run id and its status side by side
    # When runs are listed
    lines = render(RUNS_ROWS, RUNS, 20)
    # Then the ids are still whole, each on its row's line
    for run_id in RUN_IDS:
        assert any(line.startswith(f"{run_id}   ") for line in lines), lines


def test_steps_and_tools_keep_their_names_whole_at_80_columns() -> None:
    # Given a step with a long error and a tool with a long description
    step = {
        "seq": 12, "node": "suggest", "tool": "suggest_improvements", "status": "failed",
        "duration_ms": 3.25, "next": None, "error": "ValueError: " + "x" * 90,
    }  # fmt: skip
    tool = {"name": "suggest_improvements", "description": "Suggest improvements. " * 8}
    # When each is shown at 80 columns
    steps, tools = render([step], STEPS, 80), render([tool], TOOLS, 80)
    # Then the names are whole, the long text is cut with an ellipsis, one line per row
    assert "suggest_improvements" in steps[2] and "3.2" in steps[2]
    assert tools[2].startswith("suggest_improvements   Suggest improvements.")
    assert steps[2].endswith("…") and tools[2].endswith("…")
    assert len(steps) == len(tools) == 3
    assert max(len(line) for line in steps + tools) <= 80


def test_a_description_shows_its_first_sentence() -> None:
    text = "Split the code into functions.  Each gets\n   an entry, with e.g. its name."
    assert first_sentence(text) == "Split the code into functions."
    assert first_sentence("No full stop") == "No full stop"


def test_no_rows_say_so() -> None:
    assert render([], GRAPHS, 80) == ["(none)"]
