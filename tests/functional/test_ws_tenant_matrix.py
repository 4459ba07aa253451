"""Who sees what over the WebSocket API: ``$connect`` and every action, for every caller.

Each connection goes through API Gateway's part first (infra/gateway/ws_authorizer.py: the identity
source ``?token=`` must be there, then the deployed ``$connect`` authorizer function checks
the token), then the WebSocket handler, on each store in turn. A run of the owner's has taken
a step; the caller is the owner, another user, an admin, nobody, or someone with a spoiled
token. Expected: the owner and the admin are connected, subscribed and sent the run's
events; the other user is told the run does not exist, in the very words an unknown run
gets, with nothing written and nothing of the run sent; missing or bad tokens are refused
with 401 before the handler runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from engine.errors import NotFoundError
from engine.memory import MemoryQueue
from engine.service import RunService
from functions.auth import authorizer
from infra.gateway.ws_authorizer import ConnectAuthorizer, Refused, identity_sources
from infra.stack.lambda_context import LambdaContext
from infra.template.reader import load_template
from tests import auth_tokens
from tests.events import load_event
from tests.functional.test_ws_handler import (
    CONNECTION_ID,
    OWNER,
    RUN_ID,
    ManagementApiStub,
    api,  # noqa: F401  (fixture)
    invoke,
    message,
    moto_dynamodb,  # noqa: F401  (fixture)
    service,  # noqa: F401  (fixture: a run service on every store in turn)
    store,  # noqa: F401  (fixture)
    ws_env,  # noqa: F401  (fixture)
)

SEEING: dict[str, Callable[[], str]] = {
    "owner": lambda: auth_tokens.token(OWNER),
    "admin": lambda: auth_tokens.token("root", admin=True),
}
OTHER = "mallory"
BAD_TOKENS: dict[str, Callable[[], str | None]] = {
    "no token": lambda: None,
    "expired": lambda: auth_tokens.expired_token(OWNER),
    "signed by another key": lambda: auth_tokens.foreign_key_token(OWNER),
    "alg none": lambda: auth_tokens.unsigned_token(OWNER),
    "wrong audience": lambda: auth_tokens.wrong_audience_token(OWNER),
}


@pytest.fixture
def gateway_authorizer() -> Iterator[ConnectAuthorizer]:
    """The template's ``$connect`` authorizer: the deployed function, trusting the test
    issuer, behind API Gateway's identity-source check."""
    authorizer.install(auth_tokens.issuer().verifier())
    yield ConnectAuthorizer(authorizer.handler, identity_sources(load_template()))
    authorizer.install(None)


@pytest.fixture
def stepped(service: RunService) -> RunService:  # noqa: F811
    """The owner's run, one step in (events/ws_*.json name it)."""
    service.start_run("g_counter", {})
    queue = service.queue
    assert isinstance(queue, MemoryQueue)
    queue.drain(lambda hop: service.process_hop(hop, "d-0"), limit=1)
    return service


def connect_as(
    gateway: ConnectAuthorizer, token: str | None, run_id: str | None = None
) -> dict[str, Any]:
    """``$connect`` as API Gateway runs it: the authorizer, then (if it allows) the handler
    with the authorizer's context; the status and body the client's handshake gets."""
    event = load_event("ws_connect")
    del event["requestContext"]["authorizer"]  # API Gateway adds it after authorizing
    query = {k: v for k, v in (("run_id", run_id), ("token", token)) if v is not None}
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
    decision = gateway.authorize(event, LambdaContext(function_name="hopgraph-ws-authorizer"))
    if isinstance(decision, Refused):
        return {"statusCode": decision.status, "body": json.dumps(decision.body)}
    event["requestContext"]["authorizer"] = decision
    return invoke(event)


def subscribe(run_id: str = RUN_ID) -> dict[str, Any]:
    return invoke(message("ws_subscribe", json.dumps({"action": "subscribe", "run_id": run_id})))


@pytest.mark.parametrize("caller", SEEING)
def test_the_owner_and_an_admin_connect_to_the_run_and_are_subscribed(
    caller: str, gateway_authorizer: ConnectAuthorizer, stepped: RunService
) -> None:
    # Given the owner's run
    # When the owner or an admin connects with ?run_id=
    result = connect_as(gateway_authorizer, SEEING[caller](), RUN_ID)
    # Then the connection is accepted, subscribed, and remembers who opened it
    assert result["statusCode"] == 200, result
    assert [c.connection_id for c in stepped.store.subscribers(RUN_ID)] == [CONNECTION_ID]
    saved = stepped.store.get_connection(CONNECTION_ID)
    assert (saved.owner, saved.admin) == ((OWNER, False) if caller == "owner" else ("root", True))


@pytest.mark.parametrize("caller", SEEING)
def test_the_owner_and_an_admin_subscribe_and_get_the_run_s_events(
    caller: str,
    gateway_authorizer: ConnectAuthorizer,
    stepped: RunService,
    api: ManagementApiStub,  # noqa: F811
) -> None:
    # Given a connection of the owner or of an admin
    assert connect_as(gateway_authorizer, SEEING[caller]())["statusCode"] == 200
    api.expect_posts(2)
    # When it subscribes to the owner's run
    result = subscribe()
    # Then it gets the committed step and the run's status
    assert result["statusCode"] == 200
    assert [(m["type"], m.get("seq")) for m in api.messages()] == [("step", 0), ("run", None)]


def test_another_user_cannot_connect_to_the_run_and_learns_nothing(
    gateway_authorizer: ConnectAuthorizer, stepped: RunService
) -> None:
    # Given the owner's run, and what connecting to a run that does not exist answers
    unknown = connect_as(gateway_authorizer, auth_tokens.token(OTHER), "r_nope")
    # When another user connects with ?run_id= of the owner's run
    result = connect_as(gateway_authorizer, auth_tokens.token(OTHER), RUN_ID)
    # Then the connection is refused exactly as for an unknown run, and nothing is saved
    assert result["statusCode"] == unknown["statusCode"] == 404
    assert json.loads(result["body"]) == json.loads(unknown["body"].replace("r_nope", RUN_ID))
    assert stepped.store.subscribers(RUN_ID) == []


def test_another_user_subscribing_gets_the_unknown_run_error_and_no_events(
    gateway_authorizer: ConnectAuthorizer,
    stepped: RunService,
    api: ManagementApiStub,  # noqa: F811
) -> None:
    # Given another user's connection, and what subscribing to an unknown run answers
    assert connect_as(gateway_authorizer, auth_tokens.token(OTHER))["statusCode"] == 200
    api.expect_posts(2)
    unknown = subscribe("r_nope")
    # When it subscribes to the owner's run
    result = subscribe()
    # Then it gets the unknown run's error, word for word, and nothing is written
    assert result["statusCode"] == unknown["statusCode"] == 404
    not_found, refused = api.messages()
    assert refused == {**not_found, "run_id": RUN_ID, "message": f"run '{RUN_ID}' not found"}
    assert stepped.store.subscribers(RUN_ID) == []
    # And the run's next steps are posted to nobody
    queue = stepped.queue
    assert isinstance(queue, MemoryQueue)
    queue.drain(lambda hop: stepped.process_hop(hop, f"d-{hop.seq}"))
    assert len(api.posts) == 2
    assert only_errors(api.posts)


def only_errors(posts: list[tuple[str, Any]]) -> bool:
    """No post carries anything of the run: no step, no state."""
    return all(m["type"] == "error" and "state" not in m for _, m in posts)


@pytest.mark.parametrize("spoiled", BAD_TOKENS)
def test_a_missing_or_bad_token_is_refused_with_401_before_the_handler(
    spoiled: str, gateway_authorizer: ConnectAuthorizer, stepped: RunService
) -> None:
    # When a client connects with no token, or a spoiled one
    result = connect_as(gateway_authorizer, BAD_TOKENS[spoiled](), RUN_ID)
    # Then API Gateway refuses the handshake with 401, and the handler never ran
    assert result["statusCode"] == 401
    assert json.loads(result["body"]) == {"message": "Unauthorized"}
    assert stepped.store.subscribers(RUN_ID) == []
    with pytest.raises(NotFoundError):
        stepped.store.get_connection(CONNECTION_ID)


def test_a_connect_event_without_an_identity_is_refused(stepped: RunService) -> None:
    # Given a $connect that reached the handler without the authorizer (a misconfigured API)
    event = load_event("ws_connect")
    del event["requestContext"]["authorizer"]
    # When the handler runs
    result = invoke(event)
    # Then it refuses rather than serve someone anonymous
    assert result["statusCode"] == 401
    assert stepped.store.subscribers(RUN_ID) == []
