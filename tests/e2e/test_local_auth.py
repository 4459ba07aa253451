"""Signing in to the local stack, over real sockets: its token issuer, dev and strict modes,
the HTTP API's JWT authorizer, the WebSocket ``$connect`` authorizer (on the gateway's port
and through the ``/ws`` paths of the HTTP port), and ``hopgraph login``.

One stack per mode; ``strict`` refuses what AWS refuses, ``dev`` (the default) lets a caller
without any token act as the dev user, and refuses bad tokens in both.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from infra.cli.client import with_token
from infra.stack.token_issuer import DEFAULT_USER
from tests.e2e.stack import REPO, StackProcess, launch, stack_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
GRAPH = json.loads((REPO / "examples" / "code_review.json").read_text())


@pytest.fixture(scope="module")
def stacks() -> Iterator[dict[str, StackProcess]]:
    """A stack in each mode, started in parallel."""
    modes = {"dev": (), "strict": ("--auth", "strict")}
    with ThreadPoolExecutor(len(modes)) as pool:
        futures = {m: pool.submit(launch, "sqs", options=o) for m, o in modes.items()}
    started = {m: f.result() for m, f in futures.items() if f.exception() is None}
    try:
        for future in futures.values():
            future.result()
        yield started
    finally:
        for stack in started.values():
            stack.kill()


@pytest.fixture
def strict(stacks: dict[str, StackProcess]) -> StackProcess:
    return stacks["strict"]


@pytest.fixture
def dev(stacks: dict[str, StackProcess]) -> StackProcess:
    return stacks["dev"]


def secret_of(stack: StackProcess) -> Path:
    """The login secret a strict stack keeps (a dev stack has none)."""
    return stack.data / "login-secret"


def token(stack: StackProcess, user: str, admin: bool = False) -> str:
    body: dict[str, object] = {"user": user, "admin": admin}
    if secret_of(stack).exists():
        body["secret"] = secret_of(stack).read_text().strip()
    reply = httpx.post(f"{stack.api}/local/token", json=body)
    assert reply.status_code == 200, reply.text
    return str(reply.json()["token"])


def api(stack: StackProcess, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=stack.api, headers=headers, timeout=10.0)


def handshake_status(url: str) -> int:
    """101 if the WebSocket handshake succeeds, else the HTTP status it was refused with."""
    try:
        with connect(url, open_timeout=10):
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


def test_the_banner_says_which_mode_is_on(stacks: dict[str, StackProcess]) -> None:
    assert "auth       dev (no token: user 'dev'" in stacks["dev"].stdout
    assert "auth       strict (every request needs a token" in stacks["strict"].stdout


def test_strict_refuses_a_request_without_a_token_as_api_gateway_does(
    strict: StackProcess,
) -> None:
    with api(strict) as client:
        refused = client.get("/graphs")
        assert (refused.status_code, refused.json()) == (401, {"message": "Unauthorized"})
        assert refused.headers["www-authenticate"] == "Bearer"
        assert client.get("/health").status_code == 200  # open routes stay open


def test_strict_serves_each_user_their_own_graphs(strict: StackProcess) -> None:
    # Given a graph created by alice with a token of the local issuer
    with api(strict, token(strict, "alice")) as alice:
        created = alice.post("/graphs", json=GRAPH)
        assert created.status_code == 201, created.text
        graph_id = created.json()["graph_id"]
        # Then alice reads it, bob is told it does not exist, an admin reads it
        assert alice.get(f"/graphs/{graph_id}").status_code == 200
    with api(strict, token(strict, "bob")) as bob:
        assert bob.get(f"/graphs/{graph_id}").status_code == 404
        assert graph_id not in bob.get("/graphs").text
    with api(strict, token(strict, "ops", admin=True)) as admin:
        assert admin.get(f"/graphs/{graph_id}").status_code == 200


@pytest.mark.parametrize("mode", ["dev", "strict"])
def test_a_bad_token_is_refused_in_both_modes(stacks: dict[str, StackProcess], mode: str) -> None:
    stack = stacks[mode]
    with api(stack, "not.a.jwt") as client:
        refused = client.get("/graphs")
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert handshake_status(with_token(stack.ws, "not.a.jwt")) == 401


def test_dev_mode_serves_a_request_without_a_token_as_the_dev_user(dev: StackProcess) -> None:
    # Given a graph created with no token at all
    with api(dev) as anonymous:
        created = anonymous.post("/graphs", json=GRAPH)
        assert created.status_code == 201, created.text
        graph_id = created.json()["graph_id"]
    # Then it is the dev user's: the dev user's token sees it, another user's does not
    with api(dev, token(dev, DEFAULT_USER)) as as_dev:
        assert as_dev.get(f"/graphs/{graph_id}").status_code == 200
    with api(dev, token(dev, "bob")) as bob:
        assert bob.get(f"/graphs/{graph_id}").status_code == 404


def test_websocket_connections_are_authorized_on_connect(
    stacks: dict[str, StackProcess],
) -> None:
    strict, dev = stacks["strict"], stacks["dev"]
    # Without a token: refused in strict mode (API Gateway's 401), the dev user in dev mode
    assert handshake_status(strict.ws) == 401
    assert handshake_status(dev.ws) == 101
    # With a valid token: accepted, on the gateway and through /ws on the HTTP port
    alice = token(strict, "alice")
    assert handshake_status(with_token(strict.ws, alice)) == 101
    http_ws = strict.api.replace("http://", "ws://") + "/ws"
    assert handshake_status(http_ws) == 401
    assert handshake_status(with_token(http_ws, alice)) == 101


def test_another_user_cannot_follow_a_run_over_the_websocket(strict: StackProcess) -> None:
    # Given alice's run
    alice = token(strict, "alice")
    with api(strict, alice) as client:
        graph_id = client.post("/graphs", json=GRAPH).json()["graph_id"]
        started = client.post("/runs", json={"graph_id": graph_id, "input": {"code": "x = 1"}})
        run_id = started.json()["run_id"]
    # When alice, then bob, connect for it with ?run_id=
    # Then alice is subscribed, and bob is refused as for a run that does not exist
    assert handshake_status(with_token(f"{strict.ws}?run_id={run_id}", alice)) == 101
    bob = token(strict, "bob")
    assert handshake_status(with_token(f"{strict.ws}?run_id={run_id}", bob)) == 404


def hopgraph(stack: StackProcess, config: Path, *words: str) -> subprocess.CompletedProcess[str]:
    env = stack_env() | {"HOPGRAPH_CONFIG_DIR": str(config), "NO_PROXY": "127.0.0.1"}
    env.pop("HOPGRAPH_TOKEN", None)
    command = [sys.executable, "-m", "infra.cli.main", "--api", stack.api, "--ws", stack.ws, *words]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def test_hopgraph_login_stores_a_token_that_the_cli_sends(
    strict: StackProcess, tmp_path: Path
) -> None:
    # Given alice's graph
    with api(strict, token(strict, "alice")) as client:
        graph_id = client.post("/graphs", json=GRAPH).json()["graph_id"]
    # When the CLI signs in as alice, in strict mode, with the stack's login secret
    secret = str(secret_of(strict))
    login = hopgraph(strict, tmp_path, "login", "--user", "alice", "--secret-file", secret)
    assert login.returncode == 0, login.stderr
    assert "signed in" in login.stdout and "alice" in login.stdout
    # Then the token is kept for the owner's eyes only, and sent: alice's graph is listed
    [stored] = tmp_path.iterdir()
    assert stored.stat().st_mode & 0o077 == 0
    listed = hopgraph(strict, tmp_path, "graphs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert graph_id in [g["graph_id"] for g in json.loads(listed.stdout)]
    # And whoami says who, until logout forgets the token
    who = hopgraph(strict, tmp_path, "--json", "whoami")
    assert json.loads(who.stdout)["user"] == "alice", who.stderr
    assert hopgraph(strict, tmp_path, "logout").returncode == 0
    who = hopgraph(strict, tmp_path, "--json", "whoami")
    assert json.loads(who.stdout)["source"] == "none", who.stdout


def test_without_login_the_cli_is_refused_by_a_strict_stack(
    strict: StackProcess, tmp_path: Path
) -> None:
    # Given no stored token, against a strict stack
    # When a command runs
    listed = hopgraph(strict, tmp_path, "graphs", "list", "--json")
    # Then it is refused, and told to sign in: nobody is signed in without being asked
    assert listed.returncode == 2
    assert "HTTP 401" in listed.stderr and "hopgraph login --user NAME" in listed.stderr
    assert not any(tmp_path.iterdir())


def test_a_strict_stack_signs_tokens_only_for_its_login_secret(strict: StackProcess) -> None:
    # Given a strict stack, whose secret is in its data folder for its owner's eyes only
    assert secret_of(strict).stat().st_mode & 0o077 == 0
    # When a token is asked for without the secret, or with a wrong one, even an admin's
    for body in ({"user": "mallory", "admin": True}, {"user": "mallory", "secret": "guess"}):
        reply = httpx.post(f"{strict.api}/local/token", json=body)
        # Then it is refused, and says what it wants
        assert reply.status_code == 403, reply.text
        assert "login-secret" in reply.json()["message"]
    # And with the secret, it is signed
    assert token(strict, "alice")


def test_a_user_name_that_is_not_text_is_refused_not_a_server_error(dev: StackProcess) -> None:
    # When the token route is asked for a user named by a lone surrogate (valid JSON, no UTF-8)
    reply = httpx.post(
        f"{dev.api}/local/token",
        content=b'{"user": "\\ud800"}',
        headers={"content-type": "application/json"},
    )
    # Then it is the caller's mistake, said as one
    assert reply.status_code == 400, reply.text
    assert "NAME" in reply.json()["message"]


def test_the_data_folder_is_its_owners_alone(stacks: dict[str, StackProcess]) -> None:
    # Given running stacks, with their data written
    for stack in stacks.values():
        # Then the folder is 0700 and every file in it 0600 (the key, the journal, the lock)
        assert stack.data.stat().st_mode & 0o777 == 0o700
        files = [p for p in stack.data.iterdir() if p.is_file()]
        assert files and all(p.stat().st_mode & 0o077 == 0 for p in files), files


def test_an_expired_or_foreign_token_is_said_plainly_by_the_cli(
    strict: StackProcess, tmp_path: Path
) -> None:
    # Given a token that is not one of this stack's issuer
    login = hopgraph(strict, tmp_path, "login", "--token", "eyJhbGciOiJub25lIn0.e30.")
    assert login.returncode == 0, login.stderr
    # When a command sends it
    listed = hopgraph(strict, tmp_path, "graphs", "list")
    # Then the refusal says how to sign in, without a stack trace
    assert listed.returncode == 2
    assert "HTTP 401" in listed.stderr and "hopgraph login --user NAME" in listed.stderr
    assert "Traceback" not in listed.stderr
