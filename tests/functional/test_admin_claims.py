"""Claims read by their real type: who is an admin, whatever shape the identity provider sends.

The shapes are those real providers put in their tokens: Cognito's ``cognito:groups`` (a JSON
array) and ``scope`` (one space-separated string, in access tokens), Auth0's namespaced
custom claims (arrays), Entra ID's ``roles`` and ``groups`` (arrays) and ``scp`` (a
space-separated string), and booleans from custom claims.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from functions.api.deps import token_claims
from functions.auth.caller import AdminRule, caller_from_claims, claim_values, event_claims
from infra.stack.token_issuer import IssuerEndpoints
from tests import auth_tokens

COGNITO = AdminRule("cognito:groups", "hopgraph-admin")


@pytest.mark.parametrize(
    ("rule", "claims", "admin"),
    [
        # Cognito ID token: groups are a JSON array, each name whole
        (COGNITO, {"cognito:groups": ["hopgraph-admin"]}, True),
        (COGNITO, {"cognito:groups": ["readers", "hopgraph-admin"]}, True),
        (COGNITO, {"cognito:groups": ["hopgraph-admin wannabes"]}, False),
        (COGNITO, {"cognito:groups": ["[hopgraph-admin"]}, False),
        (COGNITO, {"cognito:groups": ["hopgraph-admin]"]}, False),
        (COGNITO, {"cognito:groups": ["HOPGRAPH-ADMIN"]}, False),
        (COGNITO, {"cognito:groups": [["hopgraph-admin"]]}, False),
        # a string claim is one value, never split on spaces or brackets
        (COGNITO, {"cognito:groups": "hopgraph-admin"}, True),
        (COGNITO, {"cognito:groups": "readers hopgraph-admin"}, False),
        (COGNITO, {"cognito:groups": "[hopgraph-admin wannabes]"}, False),
        (COGNITO, {"cognito:groups": '["hopgraph-admin"]'}, False),
        (COGNITO, {}, False),
        (COGNITO, {"cognito:groups": None}, False),
        # Cognito access token and Auth0: scope is a space-separated string
        (AdminRule("scope", "hopgraph/admin"), {"scope": "openid hopgraph/admin"}, True),
        (AdminRule("scope", "hopgraph/admin"), {"scope": "openid hopgraph/admin-ish"}, False),
        (AdminRule("scope", "hopgraph/admin"), {"scope": ["hopgraph/admin"]}, True),
        # Entra ID: scp is space-separated, roles and groups are arrays
        (AdminRule("scp", "Runs.Admin"), {"scp": "Runs.Read Runs.Admin"}, True),
        (AdminRule("roles", "Hopgraph.Admin"), {"roles": ["Hopgraph.Admin"]}, True),
        (AdminRule("roles", "Hopgraph.Admin"), {"roles": ["Hopgraph.Admin Reader"]}, False),
        (
            AdminRule("groups", "0f8a1c3e-admin"),
            {"groups": ["5d2e-readers", "0f8a1c3e-admin"]},
            True,
        ),
        # Auth0: a namespaced custom claim, an array of role names
        (
            AdminRule("https://hopgraph.example/roles", "admin"),
            {"https://hopgraph.example/roles": ["admin"]},
            True,
        ),
        (
            AdminRule("https://hopgraph.example/roles", "admin"),
            {"https://hopgraph.example/roles": "[admin]"},
            False,
        ),
        # booleans are booleans: "false" is a string, and no number or object is a value
        (AdminRule("admin", "true"), {"admin": True}, True),
        (AdminRule("admin", "true"), {"admin": False}, False),
        (AdminRule("admin", "true"), {"admin": "false"}, False),
        (AdminRule("admin", "true"), {"admin": 1}, False),
        (AdminRule("admin", "true"), {"admin": {"value": "true"}}, False),
    ],
)
def test_admin_by_the_claims_real_type(
    rule: AdminRule, claims: dict[str, Any], admin: bool
) -> None:
    # Given a verified token's claims, when the caller is read from them
    caller = caller_from_claims({"sub": "u1", **claims}, rule)
    # Then only an exact value of the claim, as its type says, makes an admin
    assert caller.admin is admin


def test_space_separated_only_when_asked() -> None:
    assert claim_values("a  b c", space_separated=True) == ["a", "b", "c"]
    assert claim_values("a  b c") == ["a  b c"]
    assert claim_values(["a b", 3, None, "c"]) == ["a b", "c"]
    assert claim_values(True) == ["true"] and claim_values(False) == []
    assert claim_values(2.5) == []


def _http_event(token: str) -> dict[str, Any]:
    """An HTTP API event as API Gateway builds it after its JWT authorizer accepted ``token``:
    the header as sent, the claims rendered as strings."""
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    return {
        "headers": {"authorization": f"Bearer {token}"},
        "requestContext": {"authorizer": {"jwt": {"claims": event_claims(payload)}}},
    }


def test_api_reads_groups_from_the_token_not_from_their_rendering() -> None:
    # Given a group whose name holds a space, rendered by API Gateway as "[hopgraph-admin
    # wannabes]", which reads the same as two groups
    token = auth_tokens.token("mallory", **{"cognito:groups": ["hopgraph-admin wannabes"]})
    event = _http_event(token)
    assert event["requestContext"]["authorizer"]["jwt"]["claims"]["cognito:groups"] == (
        "[hopgraph-admin wannabes]"
    )
    # When the API reads the caller
    claims = token_claims(event, COGNITO)
    # Then it reads the array from the verified token: one group, not an admin
    assert claims is not None and claims["cognito:groups"] == ["hopgraph-admin wannabes"]
    assert caller_from_claims(claims, COGNITO).admin is False
    # And a real admin is still one
    admin = token_claims(_http_event(auth_tokens.token("root", admin=True)), COGNITO)
    assert admin is not None and caller_from_claims(admin, COGNITO).admin is True


def test_a_token_that_disagrees_with_the_verified_claims_is_only_its_subject() -> None:
    # Given an event whose header carries another token than the one the authorizer verified
    event = _http_event(auth_tokens.token("bob"))
    forged = auth_tokens.token("bob", admin=True)
    event["headers"]["authorization"] = f"Bearer {forged}"
    # When the API reads the caller, then the verified subject is all it keeps: no admin
    claims = token_claims(event, COGNITO)
    assert claims == {"sub": "bob"}
    assert caller_from_claims(claims, COGNITO).admin is False
    # And without a readable token, likewise
    event["headers"]["authorization"] = "Bearer not-a-jwt"
    assert token_claims(event, COGNITO) == {"sub": "bob"}
    # And without the authorizer's claims, nobody
    assert token_claims({"headers": event["headers"]}, COGNITO) is None


@pytest.mark.parametrize(
    ("admin", "status"), [(True, 200), (False, 200), ("false", 400), ("true", 400), (1, 400)]
)
def test_the_local_issuer_takes_admin_as_a_boolean_only(admin: Any, status: int) -> None:
    # Given the local stack's token route
    client = TestClient(IssuerEndpoints(Starlette(), auth_tokens.issuer()))
    # When a token is asked for with "admin" of some JSON type
    reply = client.post("/local/token", json={"user": "alice", "admin": admin})
    # Then only a JSON boolean is accepted, and "false" never makes an admin
    assert reply.status_code == status, reply.text
    if status == 200:
        claims = json.loads(base64.urlsafe_b64decode(reply.json()["token"].split(".")[1] + "=="))
        assert caller_from_claims(claims, COGNITO).admin is admin
