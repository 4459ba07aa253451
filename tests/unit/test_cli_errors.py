"""The command line's mistakes and failures read plainly: a missing file is missing, broken
JSON is named with its line and column, a stack that is down is said to be down with what
to do about it, and "1 step" is singular. Exit code 2, never a traceback."""

from __future__ import annotations

import functools
import io
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from infra.cli import main as cli
from infra.cli.client import ApiTimedOut, HopgraphClient
from infra.cli.inputs import plural
from infra.cli.main import main
from infra.cli.progress import RunProgress, fit_keys

REPO = Path(__file__).resolve().parents[2]
GRAPH = str(REPO / "examples" / "code_review.json")


@pytest.fixture
def closed_port() -> int:
    """A local port that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def stack_down(monkeypatch: pytest.MonkeyPatch, closed_port: int) -> str:
    """HOPGRAPH_API and HOPGRAPH_WS point at a port where no stack answers."""
    api = f"http://127.0.0.1:{closed_port}"
    monkeypatch.setenv("HOPGRAPH_API", api)
    monkeypatch.setenv("HOPGRAPH_WS", f"ws://127.0.0.1:{closed_port}")
    return api


def hopgraph(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Exit code and stderr (its words, whatever the wrapping) of ``hopgraph ARGS``. The
    width is wider than any path: the console folds a word longer than a line (a temporary
    folder's path, under pytest-xdist's longer ones too) mid-word, where no word is kept."""
    with pytest.MonkeyPatch.context() as wide:
        wide.setenv("COLUMNS", "1000")
        code = main(list(args))
    return code, " ".join(capsys.readouterr().err.split())


# -- files and JSON ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [("run", "{missing}"), ("run", "{missing}", "--local"), ("graphs", "create", "{missing}")],
    ids=" ".join,
)
def test_a_missing_file_is_said_to_be_missing(
    args: tuple[str, ...], capsys: pytest.CaptureFixture[str], stack_down: str, tmp_path: Path
) -> None:
    # Given a graph file path that does not exist (and no stack: nothing is asked of it)
    missing = tmp_path / "missing.json"
    # When it is run or created
    code, err = hopgraph(capsys, *(a.format(missing=missing) for a in args))
    # Then the file is named as missing, not taken for a graph id or shown as an errno
    assert code == 2
    assert f"the file {missing} does not exist" in err, err
    assert "HTTP" not in err and "Errno" not in err and "Traceback" not in err


@pytest.mark.parametrize(
    "args",
    [("run", "{graph}"), ("run", "{graph}", "--local"), ("graphs", "create", "{graph}")],
    ids=" ".join,
)
def test_broken_json_names_the_file_and_the_position(
    args: tuple[str, ...], capsys: pytest.CaptureFixture[str], stack_down: str, tmp_path: Path
) -> None:
    # Given a graph file whose JSON breaks on line 3, column 12
    broken = tmp_path / "graph.json"
    broken.write_text('{\n  "entry": "a",\n  "nodes": }\n')
    # When it is run or created
    code, err = hopgraph(capsys, *(a.format(graph=broken) for a in args))
    # Then the error names the file, the line and the column
    assert code == 2
    assert f"{broken} is not valid JSON: Expecting value at line 3, column 12" in err, err


def test_broken_input_json_names_its_option_or_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Given an --input that is not JSON, inline and in a file
    state = tmp_path / "state.json"
    state.write_text('{"code": ')
    # When a local run is asked with each
    inline = hopgraph(capsys, "run", GRAPH, "--local", "--input", "{code: 1}")
    from_file = hopgraph(capsys, "run", GRAPH, "--local", "--input", f"@{state}")
    # Then each error says which, and where
    assert inline == (2, "error: --input is not valid JSON: Expecting property name enclosed "
                      "in double quotes at line 1, column 2")  # fmt: skip
    assert from_file[0] == 2
    assert f"{state} is not valid JSON" in from_file[1] and "line 1, column 10" in from_file[1]


def test_a_set_file_that_does_not_exist(capsys: pytest.CaptureFixture[str]) -> None:
    # Given --set KEY=@FILE with no such file
    # When a local run is asked
    code, err = hopgraph(capsys, "run", GRAPH, "--local", "--set", "code=@nowhere.py")
    # Then the file is named as missing
    assert (code, err) == (2, "error: the file nowhere.py does not exist")


def test_local_needs_a_file_not_a_graph_id(capsys: pytest.CaptureFixture[str]) -> None:
    # Given a graph id with --local
    # When it is run
    code, err = hopgraph(capsys, "run", "g_0123456789abcdef0123", "--local")
    # Then the error says that --local runs a file
    assert code == 2
    assert "--local runs a graph from a file, and there is no file g_0123456789abcdef0123" in err


# -- no stack ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ("tools",),
        ("graphs", "list"),
        ("graphs", "create", GRAPH),
        ("graphs", "show", "g_1"),
        ("runs", "list"),
        ("runs", "show", "r_1"),
        ("runs", "logs", "r_1"),
        ("runs", "cancel", "r_1"),
        ("runs", "follow", "r_1"),
        ("run", "g_1", "--follow"),
    ],
    ids=" ".join,
)
def test_every_command_says_the_stack_is_down(
    args: tuple[str, ...], capsys: pytest.CaptureFixture[str], stack_down: str
) -> None:
    # Given no stack at the API's address
    # When a command that needs it runs
    code, err = hopgraph(capsys, *args)
    # Then it says nothing answers there, and how to start the stack or point elsewhere
    assert code == 2
    assert f"nothing answers at {stack_down} (connection refused)" in err, err
    assert "make dev" in err and "--api URL" in err
    assert "HTTP 0" not in err and "Traceback" not in err


def test_run_of_a_file_with_the_stack_down_offers_local(
    capsys: pytest.CaptureFixture[str], stack_down: str
) -> None:
    # Given no stack
    # When a graph file is run against it
    code = main(["run", GRAPH, "--set", "code=@examples/sample_code.py", "-f"])
    err = capsys.readouterr().err
    # Then the same run, in this process, is offered whole on one line
    assert code == 2
    assert f"  hopgraph run {GRAPH} --local --set code=@examples/sample_code.py\n" in err, err


# -- words ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("count", "text"), [(0, "0 steps"), (1, "1 step"), (2, "2 steps")])
def test_plural(count: int, text: str) -> None:
    assert plural(count, "step") == text


@pytest.mark.parametrize(("steps", "line"), [(1, "after 1 step\n"), (11, "after 11 steps\n")])
def test_the_end_of_a_run_counts_its_steps_in_words(steps: int, line: str) -> None:
    # Given the live view of a run
    out = io.StringIO()
    progress = RunProgress(Console(file=out, width=80), show_state=False)
    # When the run's final event arrives
    progress.event({"type": "run", "run_id": "r_1", "status": "completed", "steps": steps})
    # Then the step count reads as English
    assert out.getvalue() == f"run completed {line}"


@pytest.mark.parametrize(
    ("width", "text"),
    [
        (80, "average_complexity, complexity, max_complexity"),
        (30, "average_complexity, +2 more"),
        (20, "3 keys"),
    ],
)
def test_a_steps_updated_keys_fit_the_line(width: int, text: str) -> None:
    # Given a step that updated three keys, and the room left on its line
    keys = ["average_complexity", "complexity", "max_complexity"]
    # When they are shown
    # Then as many as fit are named, and the others counted
    assert fit_keys(keys, width) == text


# -- a stack that is up but slow --------------------------------------------------------------
@pytest.fixture
def silent_api() -> Iterator[str]:
    """An address whose listener takes connections (the kernel's backlog) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_a_stack_too_busy_to_answer_is_not_said_to_be_down(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, silent_api: str
) -> None:
    # Given a stack that takes the request and does not answer within the client's timeout,
    # and a signed-in user (no token is asked of the silent stack first)
    monkeypatch.setenv("HOPGRAPH_API", silent_api)
    monkeypatch.setenv("HOPGRAPH_TOKEN", "a.signed.token")
    monkeypatch.setattr(cli, "HopgraphClient", functools.partial(HopgraphClient, timeout=0.3))
    # When a run is started on it
    code, err = hopgraph(capsys, "run", "g_1")
    # Then it says the stack is busy, and to look before starting the run again
    assert code == 2
    assert f"the API at {silent_api} took the request but did not answer within 0.3 s" in err
    assert "may still happen" in err and "hopgraph runs list" in err, err
    assert "nothing answers" not in err and "make dev" not in err


def test_a_slow_answer_to_a_read_says_to_try_again(silent_api: str) -> None:
    # Given the same stack
    client = HopgraphClient(silent_api, timeout=0.3)
    # When a run is read
    with pytest.raises(ApiTimedOut) as timed_out:
        client.get_run("r_1")
    # Then nothing was changed, and the message says so by asking only for another try
    assert str(timed_out.value).endswith("the stack is up, but busy. Try again in a moment.")
