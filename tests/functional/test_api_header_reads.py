"""A request about a run that does not show the run's state checks who may see it from the
run's header alone (``RunStore.get_run_header``), never from ``get_run``, which reads the
latest step with its whole state (tests/contract/test_run_headers.py measures both reads)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from functions.api import examples
from tests import auth_tokens
from tests.functional.api_harness import ApiStack, api_stack


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiStack]:
    with api_stack(monkeypatch) as s:
        yield s


@pytest.fixture
def run_id(stack: ApiStack) -> str:
    created = stack.call("http_create_graph")  # the code-review graph
    assert created.status == 201, created.text
    body = {"graph_id": created.json()["graph_id"], "input": {"code": examples.SAMPLE_CODE}}
    started = stack.call("http_start_run", body=body)
    assert started.status == 202, started.text
    stack.drain()
    return str(started.json()["run_id"])


class Reads:
    """Which of the store's run reads a request made."""

    def __init__(self, store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        for name in ("get_run", "get_run_header"):
            monkeypatch.setattr(store, name, self._counted(name, getattr(store, name)))

    def _counted(self, name: str, read: Any) -> Any:
        def counted(run_id: str) -> Any:
            self.calls.append(name)
            return read(run_id)

        return counted


def get(stack: ApiStack, path: str, token: str | None = "default") -> Any:
    return stack.call("http_get_run", path=path, method="GET", token=token)


@pytest.mark.parametrize(
    "path",
    ["/runs/{}/steps/0", "/runs/{}/steps/0/tasks", "/runs/{}/history", "/graph/logs/{}"],
    ids=["step", "tasks", "history", "compat-logs"],
)
def test_a_request_that_shows_no_state_reads_the_run_header_only(
    stack: ApiStack, run_id: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a finished run, and a count of the store's run reads
    reads = Reads(stack.service.store, monkeypatch)

    # When its owner reads a step, a page of tasks, its history, its log
    mine = get(stack, path.format(run_id))
    # and another owner asks the same
    theirs = get(stack, path.format(run_id), token=auth_tokens.token("mallory"))

    # Then the owner is answered and the other told the run does not exist, each from one
    # read of the header, and the run's latest state was never read to decide
    assert mine.status == 200, mine.text
    assert theirs.status == 404 and theirs.error["type"] == "not_found"
    assert reads.calls == ["get_run_header", "get_run_header"]


def test_reading_the_run_itself_still_reads_its_state(
    stack: ApiStack, run_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a finished run, and a count of the store's run reads
    reads = Reads(stack.service.store, monkeypatch)

    # When its owner reads it
    reply = get(stack, f"/runs/{run_id}")

    # Then the reply has its state, read with get_run
    assert reply.status == 200 and reply.json()["state"]
    assert reads.calls == ["get_run"]
