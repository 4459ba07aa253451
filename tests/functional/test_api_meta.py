"""``/health``, ``/tools``, the OpenAPI document and ``/docs`` through the Lambda handler."""

from __future__ import annotations

import base64
import json
import re
import tomllib
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from mangum import Mangum
from mangum.types import LambdaHandler
from starlette.applications import Starlette
from starlette.routing import Mount

from functions import runtime
from functions.api import __version__
from functions.api.app import DOCS_ASSETS_PATH, create_app
from functions.settings import get_settings
from infra.stack.lambda_context import LambdaContext
from infra.template.reader import load_template
from tests.functional.api_harness import ApiStack, api_stack, http_event, invoke

ROOT = Path(__file__).resolve().parents[2]
DOCS_PAGES = ["/docs", "/redoc"]
LAMBDA_RESPONSE_LIMIT_BYTES = 6 * 1024 * 1024
"""A synchronous invocation's response, base64 bodies included, is at most 6 MB."""
CONTENT_TYPES = {
    "js": "text/javascript",
    "css": "text/css",
    "png": "image/png",
    "json": "application/json",
}


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
        assert reply.json() == {"status": "ok", "version": __version__, "websocket": None}
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
        ("GET", "/runs/counts"), ("GET", "/runs/{run_id}"), ("GET", "/runs/{run_id}/steps"),
        ("GET", "/runs/{run_id}/steps/{seq}"), ("GET", "/runs/{run_id}/steps/{seq}/tasks"),
        ("POST", "/runs/{run_id}/cancel"), ("POST", "/runs/{run_id}/resume"),
        ("GET", "/runs/{run_id}/history"), ("POST", "/runs/{run_id}/fork"),
        ("POST", "/runs/{run_id}/redrive"), ("POST", "/runs/{run_id}/state"),
        ("GET", "/runs/{run_id}/values/{digest}"),
        ("GET", "/tools"), ("GET", "/me"), ("GET", "/health"),
        ("POST", "/graph/create"), ("POST", "/graph/run"), ("GET", "/graph/state/{run_id}"),
        ("GET", "/graph/logs/{run_id}"),
    }  # fmt: skip
    error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                if status == "401":  # API Gateway's refusal, or (never on AWS) the API's own
                    refusal = {"$ref": "#/components/schemas/GatewayRefusal"}
                    assert schema == {"anyOf": [refusal, error_ref]}, (method, path)
                elif status.startswith(("4", "5")):
                    assert schema == error_ref, (method, path, status)
            # Every operation that needs a token declares its 401; the open ones do not
            assert ("401" in operation["responses"]) == bool(operation.get("security")), path
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    # Request examples: every dialect of the code-review graph
    create = spec["paths"]["/graphs"]["post"]["requestBody"]["content"]["application/json"]
    assert set(create["examples"]) == {"canonical", "dialect1", "dialect2", "dialect3"}
    start = spec["paths"]["/runs"]["post"]["responses"]
    assert {"200", "202", "404", "413", "422"} <= set(start)


class _PageLinks(HTMLParser):
    """What a docs page makes a browser fetch: ``src``, ``href`` and ReDoc's ``spec-url``."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in ("src", "href", "spec-url") and v]


def _fetched_by(page: str) -> list[str]:
    links = _PageLinks()
    links.feed(page)
    # Swagger UI's document URL is in its inline script: `url: '/openapi.json'`.
    return links.urls + re.findall(r"\burl: '([^']+)'", page)


def _other_hosts(text: str, own_host: str) -> set[str]:
    return set(re.findall(r"https?://([^/\s'\"<>)]+)", text)) - {own_host}


def _get(path: str, handler: LambdaHandler | None = None) -> tuple[int, str, bytes]:
    """GET ``path`` through the API's Lambda handler (or ``handler``): status, content type,
    body bytes."""
    if handler is None:
        from functions.api.handler import handler as api_handler

        handler = api_handler
    result = handler(http_event("http_health", path=path), LambdaContext("hopgraph-api"))
    assert len(json.dumps(result).encode()) <= LAMBDA_RESPONSE_LIMIT_BYTES, path
    body = result.get("body") or ""
    raw = base64.b64decode(body) if result["isBase64Encoded"] else body.encode()
    return result["statusCode"], result["headers"].get("content-type", ""), raw


@pytest.mark.parametrize("page", DOCS_PAGES)
def test_docs_pages_load_only_what_the_api_serves(stack: ApiStack, page: str) -> None:
    # Given the API's Lambda handler, on a machine that reaches no other host
    own_host = http_event("http_health")["requestContext"]["domainName"]
    # When the page is fetched
    status, content_type, body = _get(page)
    assert status == 200 and content_type.startswith("text/html")
    html = body.decode()
    # Then it names no other host, and loads its script, favicon and document from this API
    assert _other_hosts(html, own_host) == set()
    urls = _fetched_by(html)
    assert f"{DOCS_ASSETS_PATH}/favicon.png" in urls and "/openapi.json" in urls
    assert any(u.endswith(".js") for u in urls)
    for url in urls:
        # And each of those is served here, whole, with its type
        assert url.startswith("/") and not url.startswith("//"), url
        status, content_type, content = _get(url)
        assert status == 200, url
        assert content_type.split(";")[0] == CONTENT_TYPES[url.rsplit(".", 1)[-1]], url
        assert content, url
        if content_type.startswith("text/css"):
            # Styles embed their images rather than fetch them
            fetched = re.findall(r"url\(\s*(['\"]?)(.*?)\1\s*\)", content.decode())
            assert [u for _, u in fetched if not u.startswith("data:")] == [], url
        if content_type.startswith("application/json"):
            # The document names no other host either
            assert _other_hosts(content.decode(), own_host) == set(), url


def test_docs_load_their_files_below_the_prefix_the_api_is_mounted_at() -> None:
    # Given the app mounted under a prefix, as behind a stage path or a proxy
    mounted = Mangum(Starlette(routes=[Mount("/v1", app=create_app())]), lifespan="off")
    for page in DOCS_PAGES:
        # When a docs page is fetched there
        status, _, body = _get(f"/v1{page}", mounted)
        assert status == 200
        # Then everything it loads is below the prefix, and is served there
        urls = _fetched_by(body.decode())
        assert urls and all(u.startswith("/v1/") for u in urls), urls
        assert [u for u in urls if _get(u, mounted)[0] != 200] == []


def test_docs_and_their_files_need_no_token_on_aws() -> None:
    # Given the HTTP API routes of template.yaml that skip its default JWT authorizer
    template = load_template()
    api = template["Resources"]["HttpApi"]["Properties"]
    if "DefaultAuthorizer" not in (api.get("Auth") or {}):
        pytest.skip("the HTTP API has no default authorizer: every route is open")
    events = template["Resources"]["ApiFunction"]["Properties"]["Events"].values()
    open_paths = [
        re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(e["Properties"]["Path"]))
        for e in events
        if e["Type"] == "HttpApi"
        and (e["Properties"].get("Auth") or {}).get("Authorizer") == "NONE"
        and e["Properties"].get("Method", "ANY").upper() in ("GET", "ANY")
    ]
    # When a browser, which sends no token for them, loads the docs pages and their files
    loaded = {u for page in DOCS_PAGES for u in [page, *_fetched_by(_get(page)[2].decode())]}
    # Then API Gateway lets each through without one
    closed = {u for u in loaded if not any(re.fullmatch(p, u) for p in open_paths)}
    assert closed == set()


def test_an_unknown_route_is_404_in_the_error_shape(stack: ApiStack) -> None:
    reply = stack.call("http_health", path="/nowhere")
    assert reply.status == 404
    assert reply.error == {"type": "not_found", "message": "no route for GET /nowhere"}


def test_health_says_where_the_websocket_api_is(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a deployment whose WebSocket API's Management endpoint is set (template.yaml)
    endpoint = "https://abc123.execute-api.eu-west-1.amazonaws.com/prod"
    monkeypatch.setenv("HOPGRAPH_WS_ENDPOINT", endpoint)
    get_settings.cache_clear()
    try:
        # When /health is called
        reply = invoke(http_event("http_health"))
        # Then it names the WebSocket API in the clients' scheme
        assert reply.json()["websocket"] == "wss://abc123.execute-api.eu-west-1.amazonaws.com/prod"
    finally:
        get_settings.cache_clear()
