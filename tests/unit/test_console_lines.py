"""The handlers' log lines as the local stack's console prints them: sentences, not JSON."""

from __future__ import annotations

import logging

from infra.stack.console import ReadableLines


def record(level: int, message: str, **extra: object) -> logging.LogRecord:
    made = logging.makeLogRecord({"levelno": level, "levelname": logging.getLevelName(level)})
    made.msg = message
    made.__dict__.update(extra)
    return made


def test_a_parked_run_request_reads_as_a_sentence() -> None:
    # Given the starter's error for a run request it parks
    parked = record(logging.ERROR, "malformed run request", reason="no owner", message_id="m-1")
    # When the console formats it
    line = ReadableLines().format(parked)
    # Then it is one line of words: the message, why, and which message
    assert line.endswith("malformed run request: no owner (message id m-1)")
    assert "{" not in line and "\n" not in line


def test_a_warning_says_it_is_one() -> None:
    line = ReadableLines().format(record(logging.WARNING, "slow poll", run_id="r_1"))
    assert line.endswith("warning: slow poll (run id r_1)")
