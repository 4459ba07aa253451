"""API Gateway's reading of a WebSocket ``$connect`` Lambda authorizer
(infra/gateway/ws_authorizer.py): which status a refused handshake gets, and what ``$connect``
is handed when it is allowed."""

from __future__ import annotations

from typing import Any

import pytest

from infra.gateway.ws_authorizer import (
    FAILED,
    FORBIDDEN,
    UNAUTHORIZED,
    ConnectAuthorizer,
    identity_sources,
)
from infra.template.reader import load_template
from tests.events import load_event


def policy(effect: str, resource: str = "arn:aws:execute-api:*/$connect") -> dict[str, Any]:
    return {
        "principalId": "alice",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
        "context": {"sub": "alice", "admin": False},
    }


def connect_event(token: str | None = "t0k3n") -> dict[str, Any]:
    event = load_event("ws_connect")
    del event["requestContext"]["authorizer"]
    event["queryStringParameters"] = {"token": token} if token is not None else {}
    return event


def authorizer(answer: Any, **options: Any) -> tuple[ConnectAuthorizer, list[dict[str, Any]]]:
    """An authorizer step whose function answers ``answer`` (raises it, if an exception)."""
    calls: list[dict[str, Any]] = []

    def function(event: dict[str, Any], context: Any) -> Any:
        calls.append(event)
        if isinstance(answer, Exception):
            raise answer
        return answer

    sources = identity_sources(load_template())
    return ConnectAuthorizer(function, sources, **options), calls


def test_the_template_names_the_token_query_parameter_as_identity_source() -> None:
    assert identity_sources(load_template()) == ["route.request.querystring.token"]


def test_an_allowing_policy_hands_connect_its_context_as_strings() -> None:
    # Given a function that allows the connection
    step, calls = authorizer(policy("Allow"))
    # When a client connects with a token
    decision = step.authorize(connect_event(), None)
    # Then $connect gets the context, every value a string, and the principal
    assert decision == {"sub": "alice", "admin": "false", "principalId": "alice"}
    # And the function got a REQUEST event for the stage's $connect, with the token
    [event] = calls
    assert event["type"] == "REQUEST" and event["methodArn"].endswith("/prod/$connect")
    assert event["queryStringParameters"]["token"] == "t0k3n"


@pytest.mark.parametrize(
    ("answer", "refusal"),
    [
        (policy("Deny"), FORBIDDEN),
        (policy("Allow", "arn:aws:execute-api:*/$disconnect"), FORBIDDEN),
        (Exception("Unauthorized"), UNAUTHORIZED),
        (RuntimeError("the issuer's keys could not be fetched"), FAILED),
        ({"principalId": "alice"}, FAILED),
    ],
    ids=["deny", "allow-elsewhere", "unauthorized", "function-failed", "no-policy"],
)
def test_a_refusal_gets_the_status_api_gateway_sends(answer: Any, refusal: Any) -> None:
    step, _ = authorizer(answer)
    assert step.authorize(connect_event(), None) == refusal
    assert (FORBIDDEN.status, UNAUTHORIZED.status, FAILED.status) == (403, 401, 500)


@pytest.mark.parametrize("token", [None, ""])
def test_without_the_token_the_function_is_not_called(token: str | None) -> None:
    step, calls = authorizer(policy("Allow"))
    assert step.authorize(connect_event(token), None) == UNAUTHORIZED
    assert calls == []


def test_in_dev_mode_a_connection_without_a_token_uses_the_dev_token() -> None:
    # Given the local stack's dev mode
    step, calls = authorizer(policy("Allow"), dev_token=lambda: "dev-token")
    # When a client connects without a token, then with one
    step.authorize(connect_event(None), None)
    step.authorize(connect_event("given"), None)
    # Then the first is checked with the dev user's token, the second with its own
    assert [c["queryStringParameters"]["token"] for c in calls] == ["dev-token", "given"]
