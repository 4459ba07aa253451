"""The HTTP API's Lambda handler, called with API Gateway events over a whole composition.

``api_stack(monkeypatch)`` sets up moto as a deployment would be (``tests.functional.aws_stack``:
the table and queues of template.yaml, ``HOPGRAPH_*`` settings) and yields an
:class:`ApiStack`: ``call`` loads an ``events/http_*.json`` event, patches its path, query
and body the way API Gateway would have built them, and invokes
``functions.api.handler.handler``; ``drain`` feeds the step queue to the worker handler as
real SQS batches until no hop is left.

Every call goes through the stand-in for API Gateway's JWT authorizer first (strict, as on
AWS): a refused token never reaches the handler, an accepted one's claims are in the event.
``call`` sends the default test user's token unless given another (``token=None``: none).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest

from engine.ports import Hop
from engine.service import RunService
from functions import runtime
from infra.gateway.http_authorizer import HttpApiJwtAuthorizer, Refusal
from infra.stack.lambda_context import LambdaContext
from infra.template.reader import open_http_routes
from tests import auth_tokens
from tests.events import load_event
from tests.functional.aws_stack import AwsStack, aws_stack


@dataclass
class Reply:
    """What the handler returned to API Gateway, decoded."""

    status: int
    headers: dict[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)

    @property
    def error(self) -> dict[str, Any]:
        """The ``error`` object of an error reply (and a check that it has the one shape)."""
        error = self.json()["error"]
        assert isinstance(error["type"], str) and isinstance(error["message"], str), error
        return error  # type: ignore[no-any-return]

    @property
    def problems(self) -> list[tuple[str, str]]:
        return [(p["location"], p["message"]) for p in self.error.get("problems") or []]


def http_event(
    name: str,
    *,
    path: str | None = None,
    method: str | None = None,
    query: Mapping[str, Any] | str | None = None,
    body: Any = None,
    raw_body: str | None = None,
) -> dict[str, Any]:
    """``events/<name>.json`` with the parts a test changes patched consistently."""
    event = load_event(name)
    if path is not None:
        event["rawPath"] = path
        event["requestContext"]["http"]["path"] = path
    if method is not None:
        event["requestContext"]["http"]["method"] = method
    if query is not None:
        raw = query if isinstance(query, str) else urlencode(query)
        event["rawQueryString"] = raw
        event.pop("queryStringParameters", None)
        if raw:
            event["queryStringParameters"] = dict(parse_qsl(raw, keep_blank_values=True))
    if body is not None or raw_body is not None:
        text = raw_body if raw_body is not None else json.dumps(body)
        event["body"] = text
        event["isBase64Encoded"] = False
        event["headers"]["content-type"] = "application/json"
        event["headers"]["content-length"] = str(len(text.encode()))
    return event


DEFAULT = "default"
"""``token=DEFAULT``: the default test user's token."""


def gateway_authorizer() -> HttpApiJwtAuthorizer:
    """API Gateway's JWT authorizer as template.yaml configures it, trusting the test issuer."""
    return HttpApiJwtAuthorizer(auth_tokens.issuer().verifier(), open_http_routes())


def through_authorizer(event: dict[str, Any], token: str | None = DEFAULT) -> Reply | None:
    """Do API Gateway's part: a Reply if it refuses the request, else None with the claims put
    into the event (``requestContext.authorizer.jwt``) as it does."""
    if token == DEFAULT:
        token = auth_tokens.token()
    if token is not None:
        event["headers"]["authorization"] = f"Bearer {token}"
    context = event["requestContext"]
    decision = gateway_authorizer().authorize(
        context["http"]["method"], context["http"]["path"], event["headers"].get("authorization")
    )
    if isinstance(decision, Refusal):
        return Reply(decision.status, decision.headers, '{"message":"Unauthorized"}')
    if decision is not None:
        context["authorizer"] = decision
    return None


def invoke(event: dict[str, Any]) -> Reply:
    """Call the API's Lambda handler as the Lambda runtime would."""
    from functions.api.handler import handler

    context = LambdaContext(function_name="hopgraph-api")
    result = handler(event, context)  # type: ignore[arg-type]  # the runtime's attributes
    text = result.get("body") or ""
    if result.get("isBase64Encoded"):
        text = base64.b64decode(text).decode()
    headers = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
    return Reply(result["statusCode"], headers, text)


@dataclass
class ApiStack:
    """The API handler over the deployment's composition on moto."""

    aws: AwsStack

    @property
    def service(self) -> RunService:
        """The service the handler built from the environment (DynamoDB store, SQS)."""
        return runtime.service()

    def call(self, name: str, *, token: str | None = DEFAULT, **patch: Any) -> Reply:
        """Send ``events/<name>.json`` (patched) with ``token`` through API Gateway's part."""
        event = http_event(name, **patch)
        refused = through_authorizer(event, token)
        return refused if refused is not None else invoke(event)

    def queued(self) -> list[Hop]:
        """The hops waiting in the step queue (left there)."""
        return [Hop.from_dict(json.loads(m["Body"])) for m in self.aws.messages("StepQueue")]

    def drain(self) -> int:
        """Deliver step-queue batches to the worker handler until the queue is empty."""
        return self.aws.drain(self.aws.worker_source())

    def step_once(self) -> int:
        """Deliver one hop to the worker handler; returns how many were handled."""
        return self.aws.worker_source(batch_size=1).poll_once().received


@contextmanager
def api_stack(monkeypatch: pytest.MonkeyPatch, **settings: str) -> Iterator[ApiStack]:
    """moto with template.yaml's table and queues and ``HOPGRAPH_*`` pointing at them: the
    handler builds its run service from the environment, exactly as in a deployment.

    ``settings``: overriding ``HOPGRAPH_<NAME>`` values (``state_limit_bytes="20000"``...).
    """
    with aws_stack(monkeypatch, **settings) as aws:
        yield ApiStack(aws)
