"""The code agrees with template.yaml (read through infra.template.reader), from the code's side.

tests/unit/test_template.py checks the template's own structure; this module checks what the
code assumes of it: the key and index names the DynamoDB store uses, the settings each
function gets, that each Handler path imports to a callable, which queue feeds which
handler, and the WebSocket and HTTP routes the handlers serve.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path
from typing import Any

import pytest

from engine.ports import Connection, GraphRecord, RunRecord, StepRecord
from functions.aws import dynamodb_items as items
from functions.settings import Settings, env_var
from infra.stack.local_stack import _retention_days
from infra.template.reader import (
    function_definitions,
    load_template,
    queue_definitions,
    table_definition,
    table_ttl_attribute,
    websocket_routes,
)

ROOT = Path(__file__).resolve().parents[2]
STORE_MODULES = sorted((ROOT / "functions/aws").glob("dynamodb_*.py"))
"""The DynamoDB store's modules: the store, its parts, and its item shapes."""
QUEUE_CONSUMERS = {
    "functions.worker.handler.handler": ["StepQueue"],
    "functions.starter.handler.handler": ["RunRequestsQueue"],
    "functions.deadletter.handler.handler": ["RunRequestsDLQ", "StepDLQ"],
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def functions(template: dict[str, Any]) -> dict[str, Any]:
    return function_definitions(template)


@pytest.fixture(scope="module")
def table(template: dict[str, Any]) -> dict[str, Any]:
    return table_definition(template)


def _string_constants(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


def _key_attributes(table: dict[str, Any]) -> dict[str | None, list[str]]:
    """Key attribute names by index (``None``: the table's primary key), HASH first."""
    keys: dict[str | None, list[str]] = {None: [k["AttributeName"] for k in table["KeySchema"]]}
    for index in table.get("GlobalSecondaryIndexes", []):
        keys[index["IndexName"]] = [k["AttributeName"] for k in index["KeySchema"]]
    return keys


# -- the table ------------------------------------------------------------------------------
def test_the_store_queries_exactly_the_indexes_the_template_declares(
    table: dict[str, Any],
) -> None:
    # Index names appear in the store's code as string literals ("GSI1", "GSI2").
    declared = {i["IndexName"] for i in table.get("GlobalSecondaryIndexes", [])}
    used = {
        s
        for path in STORE_MODULES
        for s in _string_constants(path)
        if re.fullmatch(r"GSI\d+|[A-Za-z]+Index", s)
    }
    assert used, "the store names no index at all"
    assert used <= declared, f"the store queries undeclared indexes: {used - declared}"
    assert declared <= used, f"the template declares indexes nothing queries: {declared - used}"


def test_every_key_attribute_the_store_names_is_declared(table: dict[str, Any]) -> None:
    declared = {a["AttributeName"] for a in table["AttributeDefinitions"]}
    key_like = re.compile(r"(GSI\d+)?(PK|SK)")
    used = {s for path in STORE_MODULES for s in _string_constants(path) if key_like.fullmatch(s)}
    assert {"PK", "SK"} <= used
    assert used <= declared, f"undeclared key attributes: {used - declared}"


def _sample_items() -> dict[str, dict[str, Any]]:
    graph = GraphRecord("g_1", "code_review", {"entry": "a", "nodes": {}}, 1.7e9)
    run = RunRecord("r_1", "g_1", "running", {"code": "x"}, 50, 1.7e9, 1.7e9, node="a")
    step = StepRecord("r_1", 0, "a", "t", "ok", {"x": 1}, {"x": 1}, "END", 1.7e9, 1.0)
    connection = Connection("c_1", "https://example.test/prod", 1_900_000_000)
    by_run, by_connection = items.subscription_items(connection, "r_1")
    return {
        "graph": items.graph_item(graph),
        "run": items.run_item(run),
        "step": items.step_item(step),
        "connection": items.connection_item(connection),
        "subscription by run": by_run,
        "subscription by connection": by_connection,
    }


@pytest.mark.parametrize("kind", list(_sample_items()))
def test_each_item_has_the_table_keys_with_their_declared_types(
    table: dict[str, Any], kind: str
) -> None:
    item = _sample_items()[kind]
    types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
    for index, names in _key_attributes(table).items():
        present = [name for name in names if name in item]
        if index is None:
            assert present == names, f"{kind} item lacks the primary key {names}"
        # An item is in a (sparse) index with all of its keys or with none of them.
        assert present in ([], names), f"{kind} item has only {present} of {index}'s keys"
        for name in present:
            assert set(item[name]) == {types[name]}, f"{kind}.{name} is not {types[name]}"


def test_connections_expire_by_the_template_ttl_attribute(template: dict[str, Any]) -> None:
    ttl = table_ttl_attribute(template)
    assert ttl is not None, "template.yaml enables no TTL, but connections must expire"
    for kind, item in _sample_items().items():
        if kind.startswith(("connection", "subscription")):
            assert set(item[ttl]) == {"N"}, kind


# -- functions ------------------------------------------------------------------------------
def test_every_function_gets_each_setting_and_nothing_unknown(functions: dict[str, Any]) -> None:
    expected = {env_var(name) for name in Settings.model_fields}
    for logical_id, function in functions.items():
        given = {name for name in function["environment"] if name.startswith("HOPGRAPH_")}
        assert given == expected, (
            f"{logical_id}: missing {sorted(expected - given)}, unknown {sorted(given - expected)}"
        )


def test_every_required_setting_is_given_a_value(functions: dict[str, Any]) -> None:
    required = {env_var(n) for n, f in Settings.model_fields.items() if f.is_required()}
    for logical_id, function in functions.items():
        for name in required:
            assert function["environment"].get(name) not in (None, ""), (logical_id, name)


def test_each_handler_path_imports_to_a_callable(functions: dict[str, Any]) -> None:
    for logical_id, function in functions.items():
        module_name, _, attribute = function["handler"].rpartition(".")
        module = importlib.import_module(module_name)
        handler = getattr(module, attribute, None)
        assert callable(handler), f"{logical_id}: {function['handler']} is not callable"


def test_each_queue_feeds_the_handler_that_consumes_it(functions: dict[str, Any]) -> None:
    consumed = {
        f["handler"]: sorted(s["queue"] for s in f["sqs_event_sources"])
        for f in functions.values()
        if f["sqs_event_sources"]
    }
    assert consumed == QUEUE_CONSUMERS


def test_hops_go_to_the_queue_the_worker_consumes(functions: dict[str, Any]) -> None:
    # runtime.build_queue sends hops to HOPGRAPH_STEP_QUEUE_URL: it must be the worker's queue.
    worker_queue = QUEUE_CONSUMERS["functions.worker.handler.handler"]
    for logical_id, function in functions.items():
        assert [function["environment"]["HOPGRAPH_STEP_QUEUE_URL"]] == [
            {"Ref": q} for q in worker_queue
        ], logical_id


def test_the_starter_parks_bad_requests_in_its_own_queue_dlq(functions: dict[str, Any]) -> None:
    (queue,) = QUEUE_CONSUMERS["functions.starter.handler.handler"]
    dlq = queue_definitions()[queue]["dlq"]
    starter = next(f for f in functions.values() if f["handler"].startswith("functions.starter"))
    assert starter["environment"]["HOPGRAPH_RUN_REQUESTS_DLQ_URL"] == {"Ref": dlq}


def test_websocket_routes_are_the_ones_the_handler_serves(functions: dict[str, Any]) -> None:
    from functions.websocket.handler import ROUTES

    assert set(websocket_routes()) == set(ROUTES)
    ws = [f for f in functions.values() if f["websocket_routes"]]
    assert [f["handler"] for f in ws] == ["functions.websocket.handler.handler"]
    assert set(ws[0]["websocket_routes"]) == set(ROUTES)


def _route_matches(route: str, method: str, path: str) -> bool:
    """Does an HTTP API route key (``ANY /{proxy+}``) match a request?"""
    route_method, _, route_path = route.partition(" ")
    if route_method not in ("ANY", method):
        return False
    pattern = re.escape(route_path)
    pattern = re.sub(r"\\\{[^/]+?\\\+\\\}", ".+", pattern)  # greedy {proxy+}
    pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", pattern)  # one segment {name}
    return re.fullmatch(pattern, path) is not None


def test_every_api_route_reaches_the_api_function(functions: dict[str, Any]) -> None:
    from functions.api.app import create_app

    api = [f for f in functions.values() if f["http_routes"]]
    assert [f["handler"] for f in api] == ["functions.api.handler.handler"]
    routes = api[0]["http_routes"]
    spec = create_app().openapi()
    for path, operations in {**spec["paths"], "/docs": {"get": {}}}.items():
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        for method in operations:
            assert any(_route_matches(r, method.upper(), concrete) for r in routes), (
                f"{method.upper()} {path} is routed to no function"
            )


def test_log_items_expire_by_the_template_retention(template: dict[str, Any]) -> None:
    # The functions get RetentionDays as HOPGRAPH_RETENTION_DAYS (the store writes expires_at,
    # the table's TTL attribute, on each log item), and so does the local stack
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["HOPGRAPH_RETENTION_DAYS"] == {"Ref": "RetentionDays"}
    assert table_ttl_attribute(template) == "expires_at"
    days = template["Parameters"]["RetentionDays"]["Default"]
    assert _retention_days(template) == days > 0
