"""The README walkthrough, typed into a real terminal: each ``hopgraph`` command runs in a
pseudo-terminal of 80 (or 60) columns by 24 lines (pexpect), against the local stack, and what
a person would see is checked: every step, ids whole on one line, one line per table row, no
line wider than the terminal, no traceback, and Ctrl-C of a follow saying how to follow
again. The commands are given the API's URL alone: it names its WebSocket URL itself."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pexpect
import pytest

from tests.e2e.stack import REPO, StackProcess, launch, stack_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

COLUMNS, LINES = 80, 24
DEADLINE = 60  # seconds for one command, with a wide margin
HOPGRAPH = Path(sys.executable).parent / "hopgraph"
# CSI sequences (colours, erase line, cursor moves) and the spinner's private modes
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[()][A-Za-z0-9]")
RUN_ID = re.compile(r"\br_[0-9a-f]{24}\b")
GRAPH_ID = re.compile(r"\bg_[0-9a-f]{20}\b")
# A loop long enough to be interrupted while it runs (cancelled afterwards).
LONG_LOOP = {
    "name": "long_loop",
    "entry": "inc",
    "max_steps": 2000,
    "nodes": {"inc": {"tool": "increment"}},
    "branches": {"inc": {"cases": [{"when": "count >= 1999", "to": "END"}], "default": "inc"}},
}


@pytest.fixture(scope="module")
def stack() -> Iterator[StackProcess]:
    started = launch("sqs")
    try:
        yield started
    finally:
        started.stop()


@dataclass(frozen=True)
class Screen:
    """What a terminal showed: its lines as a person reads them, and the exit code."""

    lines: list[str]
    code: int

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def screen_lines(raw: str) -> list[str]:
    """The lines left on a terminal by ``raw`` output: escapes dropped, and text after a bare
    carriage return written over what came before it (the spinner redraws its line so)."""
    lines = []
    for line in _ESCAPES.sub("", raw).split("\r\n"):
        lines.append(line.split("\r")[-1].rstrip())
    return lines


def spawn(stack: StackProcess, *args: str, columns: int = COLUMNS) -> pexpect.spawn:
    command = str(HOPGRAPH) if HOPGRAPH.exists() else sys.executable
    prefix = [] if HOPGRAPH.exists() else ["-m", "infra.cli.main"]
    env = {**stack_env(), "COLUMNS": str(columns), "LINES": str(LINES), "TERM": "xterm-256color"}
    env |= {"HOPGRAPH_API": stack.api}  # the API's URL alone: it names the WebSocket's
    return pexpect.spawn(
        command,
        [*prefix, *args],
        cwd=str(REPO),
        env=env,
        dimensions=(LINES, columns),
        encoding="utf-8",
        timeout=DEADLINE,
        preexec_fn=_ctrl_c_reaches_it,
    )


def _ctrl_c_reaches_it() -> None:
    # As for a terminal's foreground program, whatever ran the tests: a job a script starts
    # in the background (`make test &`) has SIGINT ignored, and its children inherit that.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def terminal(stack: StackProcess, *args: str, columns: int = COLUMNS) -> Screen:
    """Run ``hopgraph ARGS`` in a terminal of ``columns`` x 24 to its end."""
    child = spawn(stack, *args, columns=columns)
    raw = child.read()
    child.close()
    screen = Screen(screen_lines(raw), child.exitstatus)
    assert "Traceback" not in screen.text, screen.text
    return screen


def fits(screen: Screen, columns: int = COLUMNS) -> None:
    wide = [line for line in screen.lines if len(line) > columns]
    assert not wide, "\n".join(wide)


def one_line_per_row(screen: Screen) -> list[str]:
    """The table's rows (after its heading rule), each on one line: none continues below."""
    lines = [line for line in screen.lines if line.strip()]
    rule = next(i for i, line in enumerate(lines) if set(line.strip()) == {"─"})
    rows = lines[rule + 1 :]
    assert all(not line.startswith(" ") for line in rows), "\n".join(lines)
    return rows


def whole_on_a_line(ident: str, screen: Screen) -> None:
    """``ident`` appears on one line, not split over two."""
    assert any(ident in line for line in screen.lines), screen.text


@dataclass(frozen=True)
class Walkthrough:
    graph_id: str
    run_id: str
    steps: int
    run: Screen


@pytest.fixture(scope="module")
def walkthrough(stack: StackProcess) -> Walkthrough:
    """The README's first two commands: create the example graph, run it and follow it."""
    created = terminal(stack, "graphs", "create", "examples/code_review.json")
    assert created.code == 0, created.text
    graph_id = GRAPH_ID.search(created.text)
    assert graph_id, created.text
    run = terminal(
        stack, "run", "examples/code_review.json", "--set", "code=@examples/sample_code.py",
        "--follow",
    )  # fmt: skip
    assert run.code == 0, run.text
    run_id = RUN_ID.search(run.text)
    steps = re.search(r"run completed after (\d+) steps?$", run.text, re.MULTILINE)
    assert run_id and steps, run.text
    return Walkthrough(graph_id.group(0), run_id.group(0), int(steps.group(1)), run)


def test_run_follow_shows_every_step_and_the_final_state(walkthrough: Walkthrough) -> None:
    screen = walkthrough.run
    # The graph of the file is the one created just before: reused, not copied
    assert f"reusing graph {walkthrough.graph_id} of examples/code_review.json" in screen.text
    # Every step once, in order, then the result and the final state
    seqs = [int(s) for s in re.findall(r"^step\s+(\d+)\s", screen.text, re.MULTILINE)]
    assert seqs == list(range(walkthrough.steps)), screen.text
    assert '"quality_score":' in screen.text
    whole_on_a_line(walkthrough.run_id, screen)
    fits(screen)


@pytest.mark.parametrize("columns", [80, 60])
def test_runs_list_one_line_per_run(
    stack: StackProcess, walkthrough: Walkthrough, columns: int
) -> None:
    screen = terminal(stack, "runs", "list", columns=columns)
    assert screen.code == 0, screen.text
    rows = one_line_per_row(screen)
    row = next(line for line in rows if walkthrough.run_id in line)
    assert row.split()[0] == walkthrough.run_id and "completed" in row.split()
    assert all(RUN_ID.match(line) for line in rows), screen.text
    fits(screen, columns)


@pytest.mark.parametrize("columns", [80, 60])
def test_graphs_list_one_line_per_graph(
    stack: StackProcess, walkthrough: Walkthrough, columns: int
) -> None:
    screen = terminal(stack, "graphs", "list", columns=columns)
    assert screen.code == 0, screen.text
    rows = [line for line in one_line_per_row(screen) if walkthrough.graph_id in line]
    assert len(rows) == 1 and "code_review" in rows[0], screen.text  # one graph, not a copy
    fits(screen, columns)


@pytest.mark.parametrize("columns", [80, 60])
def test_runs_logs_one_line_per_step(
    stack: StackProcess, walkthrough: Walkthrough, columns: int
) -> None:
    screen = terminal(stack, "runs", "logs", walkthrough.run_id, columns=columns)
    assert screen.code == 0, screen.text
    rows = [line.split() for line in one_line_per_row(screen)]
    assert [int(r[0]) for r in rows] == list(range(walkthrough.steps))
    assert rows[0][1:4] == ["extract", "extract_functions", "ok"], rows[0]
    fits(screen, columns)


@pytest.mark.parametrize("columns", [80, 60])
def test_tools_one_line_per_tool(stack: StackProcess, columns: int) -> None:
    screen = terminal(stack, "tools", columns=columns)
    assert screen.code == 0, screen.text
    rows = one_line_per_row(screen)
    assert any(line.startswith("extract_functions ") for line in rows), screen.text
    fits(screen, columns)


@pytest.mark.parametrize("columns", [80, 60])
def test_runs_show_is_a_summary_for_people(
    stack: StackProcess, walkthrough: Walkthrough, columns: int
) -> None:
    screen = terminal(stack, "runs", "show", walkthrough.run_id, columns=columns)
    assert screen.code == 0, screen.text
    assert screen.lines[0].split() == ["run", walkthrough.run_id, "completed"]
    assert f"graph    {walkthrough.graph_id}" in screen.text
    assert f"{walkthrough.steps} steps" in screen.text
    assert re.search(r"^  quality_score\s+\d", screen.text, re.MULTILINE), screen.text
    fits(screen, columns)
    state = terminal(stack, "runs", "show", walkthrough.run_id, "--state", columns=columns)
    assert '"quality_score":' in state.text


def test_the_api_root_points_to_its_docs(stack: StackProcess) -> None:
    reply = httpx.get(f"{stack.api}/", follow_redirects=False)
    assert reply.status_code == 307 and reply.headers["location"].endswith("docs")
    assert httpx.get(f"{stack.api}/", follow_redirects=True).status_code == 200


def test_runs_show_json_and_mermaid_and_tools(
    stack: StackProcess, walkthrough: Walkthrough
) -> None:
    shown = terminal(stack, "runs", "show", walkthrough.run_id, "--json")
    run = json.loads(shown.text)
    assert (run["status"], run["steps"]) == ("completed", walkthrough.steps)

    mermaid = terminal(stack, "graphs", "show", walkthrough.graph_id, "--mermaid")
    assert mermaid.lines[0].startswith("flowchart"), mermaid.text

    tools = terminal(stack, "tools")
    assert tools.code == 0, tools.text
    assert any(line.startswith("extract_functions ") for line in tools.lines), tools.text
    assert "`" not in tools.text
    fits(tools)


def test_runs_follow_replays_a_finished_run(stack: StackProcess, walkthrough: Walkthrough) -> None:
    screen = terminal(stack, "runs", "follow", walkthrough.run_id)
    assert screen.code == 0, screen.text
    seqs = [int(s) for s in re.findall(r"^step\s+(\d+)\s", screen.text, re.MULTILINE)]
    assert seqs == list(range(walkthrough.steps)), screen.text
    assert f"run completed after {walkthrough.steps} steps" in screen.text


def test_a_followed_run_piped_into_head_ends_quietly(stack: StackProcess) -> None:
    # Given the walkthrough's run, followed, its output piped into head, as a person types it
    command = (f"{sys.executable} -m infra.cli.main run examples/code_review.json "
               "--set code=@examples/sample_code.py --follow | head -n 2")  # fmt: skip
    env = {**stack_env(), "HOPGRAPH_API": stack.api, "HOPGRAPH_WS": stack.ws}
    # When head has read its two lines and left
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=DEADLINE,
    )  # fmt: skip
    # Then those are its first lines, and the command said nothing more: the closed pipe is
    # not taken for a WebSocket that does not answer
    assert done.stdout.splitlines()[1].startswith("following run r_"), done.stdout
    assert done.stderr == "", done.stderr
    assert done.returncode in (0, 141)


def test_ctrl_c_of_a_follow_says_the_run_goes_on(stack: StackProcess, tmp_path: Path) -> None:
    # Given a long run, followed in the terminal
    graph = tmp_path / "long_loop.json"
    graph.write_text(json.dumps(LONG_LOOP))
    child = spawn(stack, "run", str(graph), "--follow")
    child.expect(r"following run (?:\x1b\[[0-9;]*m)*(r_[0-9a-f]{24})")  # the id is in bold
    run_id = child.match.group(1)
    child.expect(r"step(?:\x1b\[[0-9;]*m)*\s+1\s")
    # When Ctrl-C is pressed
    child.sendintr()
    rest = child.read()
    child.close()
    # Then following stops, saying that the run goes on and how to follow it again
    said = " ".join(screen_lines(rest))
    assert f"stopped following run {run_id}; the run goes on." in said, said
    assert f"follow it again: hopgraph runs follow {run_id}" in said, said
    assert child.exitstatus == 130 and "Traceback" not in said
    # And the run is indeed still running, until it is cancelled
    cancelled = terminal(stack, "runs", "cancel", run_id)
    assert f"run {run_id} is cancelled" in cancelled.text, cancelled.text
