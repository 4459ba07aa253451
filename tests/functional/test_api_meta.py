"""``/health``, ``/tools``, the OpenAPI document and ``/docs`` through the Lambda handler."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from functions import runtime
from functions.api import __version__
from functions.settings import get_settings
from tests.functional.api_harness import ApiStack, api_stack, http_event, invoke

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stack() -> Iterator[ApiStack]:
    # One moto stack for the module: these tests do not depend on what others stored.
    with pytest.MonkeyPatch.context() as monkeypatch, api_stack(monkeypatch) as s:
        yield s


def test_health_answers_without_building_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a process with no service and no deployment settings at all
    monkeypatch.delenv("HOPGRAPH_TABLE", raising=False)
    get_settings.cache_clear()
    runtime.install(None)
    try:
        # When /health is called
        reply = invoke(http_event("http_health"))
        # Then it answers, and nothing was built (building would need HOPGRAPH_TABLE)
        assert reply.status == 200
        assert reply.json() == {"status": "ok", "version": __version__}
        assert runtime._service is None
    finally:
        get_settings.cache_clear()


def test_the_version_is_the_package_version() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert __version__ == pyproject["project"]["version"]


def test_tools_describes_every_registered_tool(stack: ApiStack) -> None:
    reply = stack.call("http_list_tools")
    assert reply.status == 200
    tools = reply.json()["tools"]
    assert [t["name"] for t in tools] == stack.service.tools.names()
    detect = next(t for t in tools if t["name"] == "detect_issues")
    assert detect["parameters"] == {"reads": ["code"], "writes": ["issues"]}
    assert detect["async"] is False
    assert detect["description"].startswith("Find issues")


def test_openapi_declares_every_route_and_the_error_shape(stack: ApiStack) -> None:
    reply = stack.call("http_health", path="/openapi.json")
    assert reply.status == 200
    spec = reply.json()
    operations = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    assert operations == {
        ("POST", "/graphs"), ("GET", "/graphs"), ("GET", "/graphs/{graph_id}"),
        ("GET", "/graphs/{graph_id}/mermaid"), ("POST", "/runs"), ("GET", "/runs"),
        ("GET", "/runs/{run_id}"), ("GET", "/runs/{run_id}/steps"),
        ("POST", "/runs/{run_id}/cancel"), ("GET", "/tools"), ("GET", "/health"),
        ("POST", "/graph/create"), ("POST", "/graph/run"), ("GET", "/graph/state/{run_id}"),
        ("GET", "/graph/logs/{run_id}"),
    }  # fmt: skip
    error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == error_ref, (method, path, status)
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    # Request examples: every dialect of the code-review graph
    create = spec["paths"]["/graphs"]["post"]["requestBody"]["content"]["application/json"]
    assert set(create["examples"]) == {"canonical", "dialect1", "dialect2", "dialect3"}
    start = spec["paths"]["/runs"]["post"]["responses"]
    assert {"200", "202", "404", "413", "422"} <= set(start)


def test_docs_page_is_served(stack: ApiStack) -> None:
    reply = stack.call("http_health", path="/docs")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in reply.text


def test_an_unknown_route_is_404_in_the_error_shape(stack: ApiStack) -> None:
    reply = stack.call("http_health", path="/nowhere")
    assert reply.status == 404
    assert reply.error == {"type": "not_found", "message": "no route for GET /nowhere"}
