"""Who sees what over the HTTP API: every route, for every kind of caller.

The API is called as API Gateway would call it (strict: its JWT authorizer in front, the
claims in the event). Alice owns a graph and a run whose state holds a secret; the caller is
Alice, another user, an admin, nobody, or someone with a spoiled token. Expected: Alice and
the admin are served; the other user is told the resources do not exist (404) and lists
nothing of Alice's; missing or bad tokens are refused with 401 before the function runs;
no reply to anyone but Alice and the admin carries anything of Alice's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests import auth_tokens
from tests.functional.api_harness import ApiStack, api_stack

SECRET = "sk-SECRET-123"
OWNER = "alice"


@dataclass(frozen=True)
class Owned:
    graph_id: str
    run_id: str


@dataclass(frozen=True)
class Route:
    event: str
    path: Callable[[Owned], str]
    body: Callable[[Owned], Any] | None = None
    lists: str | None = None
    """For a listing: the id field of its items (``graph_id``, ``run_id``)."""
    reads_owned: bool = True
    """False for routes that touch nothing of Alice's (tools, creating a graph)."""
    query: Callable[[Owned], dict[str, str]] = lambda o: {}


ROUTES = [
    Route("http_list_graphs", lambda o: "/graphs", lists="graph_id"),
    Route("http_get_graph", lambda o: f"/graphs/{o.graph_id}"),
    Route("http_graph_mermaid", lambda o: f"/graphs/{o.graph_id}/mermaid"),
    Route("http_start_run", lambda o: "/runs", lambda o: {"graph_id": o.graph_id, "input": {}}),
    Route("http_list_runs", lambda o: "/runs", lists="run_id"),
    Route(
        "http_list_runs",
        lambda o: "/runs",
        lists="run_id",
        query=lambda o: {"graph_id": o.graph_id, "status": "running"},
    ),
    Route("http_get_run", lambda o: f"/runs/{o.run_id}"),
    Route("http_run_steps", lambda o: f"/runs/{o.run_id}/steps"),
    Route("http_cancel_run", lambda o: f"/runs/{o.run_id}/cancel"),
    Route("http_compat_run_graph", lambda o: "/graph/run", lambda o: {"graph_id": o.graph_id}),
    Route("http_compat_state", lambda o: f"/graph/state/{o.run_id}"),
    Route("http_compat_logs", lambda o: f"/graph/logs/{o.run_id}"),
    Route("http_list_tools", lambda o: "/tools", reads_owned=False),
    Route("http_create_graph", lambda o: "/graphs", reads_owned=False),
    Route("http_compat_create_graph", lambda o: "/graph/create", reads_owned=False),
]
BAD_TOKENS: dict[str, Callable[[], str | None]] = {
    "no token": lambda: None,
    "expired": lambda: auth_tokens.expired_token(OWNER),
    "signed by another key": lambda: auth_tokens.foreign_key_token(OWNER),
    "alg none": lambda: auth_tokens.unsigned_token(OWNER),
    "wrong audience": lambda: auth_tokens.wrong_audience_token(OWNER),
    "not a JWT": lambda: "sk-SECRET-123.not.a.jwt",
}


def _name(route: Route) -> str:
    query = "&".join(sorted(route.query(Owned("g", "r"))))
    return f"{route.event}?{query}" if query else route.event


@pytest.fixture(scope="module")
def stack() -> Iterator[ApiStack]:
    """One deployment for the module: each test has a graph and run of its own (``owned``),
    and no test's expectation depends on what other tests of Alice's or the admin's left
    (listings are checked to include Alice's ids; Bob never writes anything)."""
    with pytest.MonkeyPatch.context() as monkeypatch, api_stack(monkeypatch) as s:
        yield s


@pytest.fixture
def owned(stack: ApiStack) -> Owned:
    """Alice's graph, and her run of it whose state holds a secret (new for each test: some
    routes change them, a cancel for one)."""
    alice = auth_tokens.token(OWNER)
    graph = stack.call("http_create_graph", token=alice)
    assert graph.status == 201
    graph_id = graph.json()["graph_id"]
    body = {"graph_id": graph_id, "input": {"code": "x = 1\n", "api_key": SECRET}}
    run = stack.call("http_start_run", token=alice, body=body)
    assert run.status == 202
    return Owned(graph_id, run.json()["run_id"])


def _call(stack: ApiStack, route: Route, owned: Owned, token: str | None) -> Any:
    patch: dict[str, Any] = {"path": route.path(owned), "query": route.query(owned)}
    if route.body is not None:
        patch["body"] = route.body(owned)
    return stack.call(route.event, token=token, **patch)


def _ids(reply: Any, field: str) -> set[str]:
    return {item[field] for item in reply.json()["items"]}


@pytest.mark.parametrize("route", ROUTES, ids=_name)
@pytest.mark.parametrize("admin", [False, True], ids=["owner", "admin"])
def test_the_owner_and_an_admin_are_served(
    stack: ApiStack, owned: Owned, route: Route, admin: bool
) -> None:
    # Given Alice's graph and run, and a token of Alice or of an admin
    token = auth_tokens.token("root", admin=True) if admin else auth_tokens.token(OWNER)
    # When the route is called
    reply = _call(stack, route, owned, token)
    # Then it is served, and a listing includes Alice's resource
    assert 200 <= reply.status < 300, (reply.status, reply.text)
    if route.lists is not None:
        expected = owned.graph_id if route.lists == "graph_id" else owned.run_id
        assert expected in _ids(reply, route.lists)


@pytest.mark.parametrize("route", [r for r in ROUTES if r.reads_owned], ids=_name)
def test_another_user_finds_nothing_of_the_owner(
    stack: ApiStack, owned: Owned, route: Route
) -> None:
    # Given Alice's graph and run, and Bob's valid token
    bob = auth_tokens.token("bob")
    # When Bob calls the route with Alice's ids
    reply = _call(stack, route, owned, bob)
    # Then Alice's resources do not exist for him: 404, or a listing without them
    if route.lists is not None:
        assert reply.status == 200
        assert _ids(reply, route.lists) == set()
    else:
        assert reply.status == 404, (reply.status, reply.text)
        assert reply.error["type"] == "not_found"
    # And nothing of Alice's leaks into the reply
    assert SECRET not in reply.text and OWNER not in reply.text


def test_another_user_cannot_cancel_the_owners_run(stack: ApiStack, owned: Owned) -> None:
    # Given Bob tried to cancel Alice's run
    cancel = next(r for r in ROUTES if r.event == "http_cancel_run")
    reply = _call(stack, cancel, owned, auth_tokens.token("bob"))
    assert reply.status == 404
    # Then the run is still running for Alice
    alice = stack.call("http_get_run", token=auth_tokens.token(OWNER), path=f"/runs/{owned.run_id}")
    assert alice.json()["status"] == "running"


@pytest.mark.parametrize("route", ROUTES, ids=_name)
@pytest.mark.parametrize("bad", list(BAD_TOKENS), ids=list(BAD_TOKENS))
def test_missing_or_bad_tokens_are_refused_before_the_function(
    stack: ApiStack, owned: Owned, route: Route, bad: str
) -> None:
    # Given a request without a token, or with a spoiled one
    token = BAD_TOKENS[bad]()
    # When it calls the route
    reply = _call(stack, route, owned, token)
    # Then API Gateway refuses it with 401 and its one body, saying nothing of any resource
    assert reply.status == 401
    assert reply.json() == {"message": "Unauthorized"}
    assert reply.headers["www-authenticate"].startswith("Bearer")
    assert SECRET not in reply.text and owned.run_id not in reply.text


@pytest.mark.parametrize("path", ["/health", "/openapi.json"])
def test_routes_that_read_no_data_need_no_token(stack: ApiStack, path: str) -> None:
    event = "http_health" if path == "/health" else "http_list_tools"
    assert stack.call(event, token=None, path=path).status == 200


def test_the_owner_is_set_by_the_server_not_the_client(stack: ApiStack) -> None:
    # Given Alice creates a graph claiming to be Bob in the body
    alice = auth_tokens.token(OWNER)
    doc = {**stack.call("http_create_graph", token=alice).json()["graph"], "owner": "bob"}
    created = stack.call("http_create_graph", token=alice, body=doc)
    # Then either the document is refused or the graph is Alice's, never Bob's
    if created.status == 201:
        graph_id = created.json()["graph_id"]
        assert stack.service.store.get_graph(graph_id).owner == OWNER
        bob_sees = stack.call("http_list_graphs", token=auth_tokens.token("bob")).json()
        assert graph_id not in {g["graph_id"] for g in bob_sees["items"]}
    else:
        assert created.status == 422
