"""Following a run that pauses ends with its questions and how to answer them, whether the
paused status came live (with its questions) or was told on subscribing (without them: the
run's record has them)."""

from __future__ import annotations

from typing import Any

import pytest

from infra.cli import runs
from infra.cli.output import Output

PAUSED_RUN = {
    "run_id": "r_1", "status": "paused",
    "pending": [{"id": "1/interrupt/approve", "task": "approve", "kind": "interrupt",
                 "prompt": "Ship it?", "schema": {"type": "boolean"}, "until": None}],
}  # fmt: skip


class Client:
    token = None

    def __init__(self) -> None:
        self.read: list[str] = []

    def get_run(self, run_id: str) -> dict[str, Any]:
        self.read.append(run_id)
        return PAUSED_RUN


@pytest.mark.parametrize("told", [{"status": "paused"}, {**PAUSED_RUN, "type": "run"}])
def test_a_follow_that_ends_paused_shows_the_questions(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], told: dict[str, Any]
) -> None:
    monkeypatch.setattr(runs, "_stream", lambda *_: (1, told))
    client = Client()
    assert runs.follow(client, "ws://x", "r_1", Output(as_json=False), 5.0) == 1  # type: ignore[arg-type]
    shown = capsys.readouterr().out
    if told.get("pending"):  # the live event had them, and the progress display showed them
        assert client.read == []
    else:
        assert client.read == ["r_1"]
        assert "approve: Ship it? (answer: boolean)" in shown
        assert "hopgraph runs resume r_1 --value JSON" in shown
