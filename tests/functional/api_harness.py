"""The HTTP API's Lambda handler, called with API Gateway events over a whole composition.

``api_stack()`` installs a run service and yields an :class:`ApiStack`; ``call`` loads an
``events/http_*.json`` event, patches its path, query and body the way API Gateway would
have built them, and invokes ``functions.api.handler.handler``; ``drain`` then delivers the
queued hops until the runs they belong to stop moving.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from engine.memory import MemoryQueue, MemoryRunStore
from engine.service import RunService
from functions import runtime
from functions.settings import Settings
from infra.lambda_context import LambdaContext
from tests.events import load_event


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
    service: RunService
    queue: MemoryQueue
    delivered: list[str] = field(default_factory=list)

    def call(self, name: str, **patch: Any) -> Reply:
        return invoke(http_event(name, **patch))

    def drain(self) -> int:
        """Deliver every queued hop (and those they dispatch); returns how many."""

        def deliver(hop: Any) -> None:
            self.delivered.append(self.service.process_hop(hop, f"d-{uuid.uuid4().hex}"))

        return self.queue.drain(deliver)


@contextmanager
def api_stack(settings: Settings | None = None) -> Iterator[ApiStack]:
    """The run service the handler uses, built as ``functions.runtime`` builds it.

    In memory: the store and queue of ``engine.memory``, the deployment's toolkits and
    engine configuration from ``settings``.
    """
    settings = settings or Settings(table="hopgraph-test")
    queue = MemoryQueue()
    service = RunService(
        MemoryRunStore(),
        queue,
        runtime.build_tools(settings),
        config=runtime.engine_config(settings),
    )
    runtime.install(service)
    try:
        yield ApiStack(service, queue)
    finally:
        runtime.install(None)
