"""``hopgraph runs history | fork | redrive | edit`` against the API's Lambda handler: the
command line's HTTP requests are turned into API Gateway events (through the JWT authorizer
stand-in) and answered by ``functions.api.handler``, over moto."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from infra.cli import main as cli
from infra.cli.client import HopgraphClient
from tests import auth_tokens
from tests.functional.api_harness import ApiStack, api_stack, http_event, invoke, through_authorizer
from tests.functional.test_api_history import CHAIN, COUNTER, run_of, started

API = "http://api.test"


def lambda_transport() -> httpx.MockTransport:
    """Each request as API Gateway would hand it to the API's Lambda function."""

    def handle(request: httpx.Request) -> httpx.Response:
        body = request.content.decode() or None
        event = http_event("http_get_run", path=request.url.path, method=request.method,
                           query=request.url.query.decode(), raw_body=body)  # fmt: skip
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ") or None
        reply = through_authorizer(event, bearer) or invoke(event)
        return httpx.Response(reply.status, headers=reply.headers, text=reply.text)

    return httpx.MockTransport(handle)


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiStack]:
    with api_stack(monkeypatch) as s:
        transport = lambda_transport()

        def client(api: str, **_: Any) -> HopgraphClient:
            made = HopgraphClient(api, token=auth_tokens.token())
            made._http = httpx.Client(base_url=API, transport=transport)
            return made

        monkeypatch.setattr(cli, "HopgraphClient", client)
        monkeypatch.setenv("HOPGRAPH_API", API)
        yield s


def hopgraph(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    capsys.readouterr()  # the worker's logs (stdout, as on Lambda) are not the command's
    code = cli.main([*args, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_history_and_fork_from_the_command_line(
    stack: ApiStack, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a completed chain
    parent = started(stack, CHAIN, {})

    # When its history is read, and it is forked after a with an update
    listed = hopgraph(capsys, "runs", "history", parent)
    forked = hopgraph(capsys, "runs", "fork", parent, "--from", "0",
                      "--update", '{"notes": ["cli"]}', "--key", "k1")  # fmt: skip
    stack.drain()

    # Then the history lists its checkpoints, and the fork ran from there and names its parent
    assert [i["node"] for i in listed["items"]] == ["a", "b", "c"]
    body = run_of(stack, forked["run_id"])
    assert body["state"] == {"trail": ["a", "b", "c"], "notes": ["cli"]}
    assert body["parent"] == {"run_id": parent, "seq": 0}
    history = hopgraph(capsys, "runs", "history", forked["run_id"], "--states")
    assert history["parent"] == {"run_id": parent, "seq": 0}
    assert history["items"][0]["source"] == "fork"
    assert history["items"][-1]["state"]["notes"] == ["cli"]
    capsys.readouterr()
    assert cli.main(["runs", "show", forked["run_id"]]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert f"forked from run {parent} at step 0" in shown


def test_redrive_and_edit_from_the_command_line(
    stack: ApiStack, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a run its step limit stopped
    run_id = started(stack, COUNTER, {"n": 0})

    # When it is redriven with a higher limit
    redriven = hopgraph(capsys, "runs", "redrive", run_id, "--max-steps", "20")
    stack.drain()

    # Then it went on to the end; and an edit of a run that is not paused is refused
    assert redriven["status"] == "running"
    assert run_of(stack, run_id)["status"] == "completed"
    capsys.readouterr()
    code = cli.main(["runs", "edit", run_id, "--update", '{"n": 1}'])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "only a paused run" in err and "409" in err
