"""The app against its own OpenAPI document, with schemathesis (in process, over ASGI).

Every operation gets generated requests, valid and invalid, and every answer must be no
server error, declared for its status code, and conform to the declared schema. The store
holds a graph and a run under the ids the document's examples use, so the explicit examples
reach the 200 paths, not only the 404s.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import DataGenerationMethod
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from engine.memory import MemoryQueue, MemoryRunStore
from engine.ports import GraphRecord, RunRecord
from engine.service import RunService
from engine.tools import load_toolkits
from engine.validation import build_graph
from functions import runtime
from functions.api.app import create_app
from functions.api.examples import CANONICAL, EXAMPLE_GRAPH_ID, EXAMPLE_RUN_ID
from infra.gateway.http_authorizer import JwtAuthorizerMiddleware
from tests import auth_tokens
from tests.functional.api_harness import gateway_authorizer

# FastAPI writes OpenAPI 3.1; schemathesis 3.x reads it behind this switch.
schemathesis.experimental.OPEN_API_3_1.enable()

EXAMPLES_PER_OPERATION = 90
"""15 operations; the two without parameters have one case each: > 1,000 cases in all."""

# API Gateway's JWT authorizer in front, as deployed; every case carries a valid token.
app = JwtAuthorizerMiddleware(create_app(), gateway_authorizer())
schema = schemathesis.from_asgi(
    "/openapi.json", app, data_generation_methods=DataGenerationMethod.all()
)
TOKEN = auth_tokens.token()
CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
)


def _seeded_service() -> RunService:
    """A service whose store has the example graph and a running example run."""
    tools = load_toolkits(["engine.toolkits.code_review"])
    store = MemoryRunStore()
    graph = build_graph(CANONICAL, set(tools.names()))
    owner = auth_tokens.DEFAULT_USER
    store.put_graph(GraphRecord(EXAMPLE_GRAPH_ID, graph.name, graph.to_dict(), 1.7e9, owner))
    state = {"code": "x = 1\n"}
    header = RunRecord(
        EXAMPLE_RUN_ID, EXAMPLE_GRAPH_ID, "running", state, 50, 1.7e9, 1.7e9, owner=owner
    )
    store.create_run(header)
    return RunService(store, MemoryQueue(), tools)


@pytest.fixture(scope="module", autouse=True)
def service() -> Iterator[RunService]:
    # The admin rule comes from the settings; the table is never reached (memory store).
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HOPGRAPH_TABLE", "unused")
        from functions.settings import get_settings

        get_settings.cache_clear()
        yield from _installed(_seeded_service())
        get_settings.cache_clear()


def _installed(svc: RunService) -> Iterator[RunService]:
    runtime.install(svc)
    yield svc
    runtime.install(None)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,  # the same cases every run: a gate in `make test`, not a lottery
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_conforms(case: schemathesis.Case, case_counter: Counter[str]) -> None:
    case_counter[f"{case.method} {case.path}"] += 1
    case.call_and_validate(checks=CHECKS, headers={"Authorization": f"Bearer {TOKEN}"})


NO_TOKEN_EXAMPLES = 10
"""Without a token the answer never depends on the request: a few cases per operation."""


@schema.parametrize()
@settings(
    max_examples=NO_TOKEN_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_without_a_token_every_operation_is_refused_with_401(case: schemathesis.Case) -> None:
    # Given a generated request that carries no valid token (none, or a generated one)
    needs_token = bool(case.operation.definition.raw.get("security"))
    # When it is sent through API Gateway's authorizer
    response = case.call_and_validate(checks=CHECKS)
    # Then every operation that needs a token refuses it, as declared, and says nothing more
    if needs_token:
        assert response.status_code == 401, (case.method, case.path, response.text)
        assert response.json() == {"message": "Unauthorized"}
    else:  # /health describes the service and reads no data
        assert response.status_code == 200
