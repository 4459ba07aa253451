"""Model stand-ins the tests share: a bedrock-runtime client for botocore's Stubber (checked
against the service model, no credentials needed), a ConverseStream client giving events in
the shape botocore parses them into, an OpenAI-compatible HTTP error, and LangChain's fake
chat model playing a node's scripted ``responses`` (LangGraph's side of a ported example)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import boto3
import httpx


def bedrock_client() -> Any:
    """A bedrock-runtime client with dummy credentials: for a Stubber, never for a call."""
    return boto3.client(
        "bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )


class StreamClient:
    """converse_stream as boto3 returns it: ``{"stream": <iterable of parsed events>}``."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events
        self.params: dict[str, Any] = {}

    def converse_stream(self, **params: Any) -> dict[str, Any]:
        self.params = params
        return {"stream": iter(self.events)}


def http_status_error(
    status: int, message: str = "slow down", headers: dict[str, str] | None = None
) -> httpx.HTTPStatusError:
    """What httpx raises for an OpenAI-compatible endpoint's error reply."""
    request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    response = httpx.Response(
        status, json={"error": {"message": message}}, headers=headers, request=request
    )
    return httpx.HTTPStatusError(f"HTTP {status}", request=request, response=response)


def langchain_scripted(responses: Sequence[Any]) -> Any:
    """LangChain's ``FakeMessagesListChatModel`` answering a scripted node's ``responses``
    (a string, or ``{"text", "tool_calls": [{"id", "name", "input"}]}``), tools bound or not."""
    from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
    from langchain_core.messages import AIMessage

    script = []
    for item in responses:
        if isinstance(item, str):
            script.append(AIMessage(content=item))
            continue
        calls = [{"id": c["id"], "name": c["name"], "args": c["input"]} for c in item["tool_calls"]]
        script.append(AIMessage(content=item.get("text", ""), tool_calls=calls))

    class Scripted(FakeMessagesListChatModel):
        def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
            return self

    return Scripted(responses=script)
