"""``hopgraph ... | head``: when the reader of the output goes away, the command ends quietly,
as Unix tools do (no ``BrokenPipeError`` traceback, no "Exception ignored" at exit)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LOCAL_RUN = [
    "run", "examples/code_review.json", "--local", "--set", "code=@examples/sample_code.py",
]  # fmt: skip


def into_closed_pipe(*args: str) -> subprocess.CompletedProcess[str]:
    """``hopgraph ARGS`` writing to a pipe whose reader has already gone, as after ``head``."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "infra.cli.main", *args],
            cwd=REPO,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize("output", ["text", "json"])
def test_a_closed_pipe_ends_the_command_quietly(output: str) -> None:
    # Given a local run whose output goes to a pipe nobody reads any more
    args = [*LOCAL_RUN, "--json"] if output == "json" else LOCAL_RUN
    # When it writes its first line
    done = into_closed_pipe(*args)
    # Then it stops there, says nothing (--json: its steps go to stderr, and nothing else),
    # and exits as a process ended by SIGPIPE would
    if output == "text":
        assert done.stderr == ""
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    assert "error" not in done.stderr
    assert done.returncode == 141


def test_a_local_run_with_json_prints_json_alone_on_stdout() -> None:
    # When a local run is asked for JSON
    done = subprocess.run(
        [sys.executable, "-m", "infra.cli.main", *LOCAL_RUN, "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    # Then stdout is one JSON document, the result; the steps went to stderr
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "completed" and result["steps"] == len(result["log"])
    assert "step" in done.stderr


def test_head_reads_the_first_lines_and_the_command_ends_quietly() -> None:
    # Given a local run piped into head, through a shell, as a person types it
    command = f"{sys.executable} -m infra.cli.main {' '.join(LOCAL_RUN)} | head -n 2"
    # When head has read its two lines and left
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Then those are the first two steps, and the command said nothing on stderr
    lines = done.stdout.splitlines()
    assert [line.split()[:3] for line in lines] == [
        ["step", "0", "extract"],
        ["step", "1", "complexity"],
    ]
    assert done.stderr == ""
    assert done.returncode in (0, 141)  # 0 if the run ended before head closed the pipe
