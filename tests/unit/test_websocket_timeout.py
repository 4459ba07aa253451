"""Functions behind the WebSocket API stop before API Gateway stops waiting for them.

API Gateway's WebSocket integrations wait 29 s by default and at most (``TimeoutInMillis``,
50 to 29,000 ms, a quota that cannot be raised). A function allowed to run longer is cut off by
API Gateway, not by Lambda: the client gets "Endpoint request timed out" while the function
runs on, and its timeout never shows in its own logs.
"""

from __future__ import annotations

from typing import Any

from infra.template.reader import function_definitions, load_template

WEBSOCKET_INTEGRATION_LIMIT_MS = 29_000


def _websocket_integration_timeouts_ms(template: dict[str, Any]) -> list[int]:
    """The timeout of each integration of a WebSocket API, as API Gateway applies it."""
    websocket_apis = {
        name
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::ApiGatewayV2::Api"
        and resource["Properties"].get("ProtocolType") == "WEBSOCKET"
    }
    return [
        min(int(props.get("TimeoutInMillis", WEBSOCKET_INTEGRATION_LIMIT_MS)),
            WEBSOCKET_INTEGRATION_LIMIT_MS)
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::ApiGatewayV2::Integration"
        and (props := resource["Properties"]).get("ApiId") in [{"Ref": a} for a in websocket_apis]
    ]  # fmt: skip


def test_websocket_functions_time_out_before_the_integration() -> None:
    # Given the template's WebSocket integrations and the functions that serve their routes
    template = load_template()
    integration_ms = _websocket_integration_timeouts_ms(template)
    served = {
        name: function["timeout"]
        for name, function in function_definitions(template).items()
        if function["websocket_routes"]
    }
    assert integration_ms and "WebSocketFunction" in served
    # Then each function's own timeout ends before the shortest integration timeout
    too_long = {name: s for name, s in served.items() if s * 1000 >= min(integration_ms)}
    assert too_long == {}, f"Timeout (s) not below {min(integration_ms)} ms: {too_long}"
