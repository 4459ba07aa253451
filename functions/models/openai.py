"""Any OpenAI-compatible chat-completions endpoint (OpenAI, Ollama, vLLM...) by base URL,
over plain httpx; streaming through server-sent events.

The API key comes from the environment (``HOPGRAPH_OPENAI_API_KEY``, or an SSM parameter
named by ``HOPGRAPH_OPENAI_API_KEY_PARAMETER``: :func:`functions.models.api_key`), never
from the graph. Conversion is pure (:func:`to_openai`, :func:`from_openai_messages`), and
errors are classified in one place (:func:`classify`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import httpx

from engine.messages import (
    Message,
    ModelError,
    ModelRequest,
    ModelResponse,
    TokenSink,
    Usage,
)

PROVIDER = "openai"
_STOP = {
    "stop": "end_turn",
    "tool_calls": "tool_use",
    "length": "max_tokens",
    "content_filter": "content_filtered",
    "function_call": "tool_use",
}


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The wait an error reply asks for: OpenAI's ``retry-after-ms``, or the standard
    ``Retry-After`` in seconds (an HTTP date is not read: the backoff stands)."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            value = float(headers.get(name, ""))
        except ValueError:
            continue
        if value >= 0:
            return value * scale
    return None


def classify(exc: BaseException) -> ModelError:
    """The one place an OpenAI-compatible failure is judged worth retrying (429, 5xx,
    timeouts, a dropped connection) or not (another 4xx: a bad request, a bad key)."""
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        try:
            detail = exc.response.json().get("error", {})
            message = detail.get("message") if isinstance(detail, dict) else str(detail)
        except (ValueError, AttributeError):
            message = exc.response.text[:500]
        return ModelError(
            PROVIDER,
            message or f"HTTP {status}",
            retryable=status == 429 or status >= 500,
            code=str(status),
            retry_after_s=retry_after(exc.response.headers),
        )
    if isinstance(exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError):
        return ModelError(
            PROVIDER, str(exc) or type(exc).__name__, retryable=True, code=type(exc).__name__
        )
    return ModelError(PROVIDER, f"{type(exc).__name__}: {exc}", retryable=False)


# -- conversion --------------------------------------------------------------------------------
def to_openai(request: ModelRequest, stream: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"model": request.model, "messages": to_openai_messages(request)}
    for key in ("max_tokens", "temperature", "top_p", "stop"):
        if key in request.inference:
            body[key] = request.inference[key]
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": dict(t.input_schema),
                },
            }
            for t in request.tools
        ]
        if request.force_tool:
            body["tool_choice"] = {"type": "function", "function": {"name": request.force_tool}}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def to_openai_messages(request: ModelRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": request.system})
    for message in request.messages:
        out.extend(_message_out(message))
    return out


def _message_out(message: Message) -> list[dict[str, Any]]:
    blocks = message["content"]
    if message["role"] == "assistant":
        doc: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(b["text"] for b in blocks if "text" in b) or None,
        }
        calls = [b["toolUse"] for b in blocks if "toolUse" in b]
        if calls:
            doc["tool_calls"] = [
                {
                    "id": c["toolUseId"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": json.dumps(c["input"])},
                }
                for c in calls
            ]
        return [doc]
    out: list[dict[str, Any]] = []
    for block in blocks:
        if "toolResult" in block:
            result = block["toolResult"]
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": result["toolUseId"],
                    "content": _result_text(result["content"]),
                }
            )
    parts = [b for b in blocks if "text" in b or "image" in b]
    if parts:
        if len(parts) == 1 and "text" in parts[0]:
            out.append({"role": "user", "content": parts[0]["text"]})
        else:
            out.append(
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": b["text"]}
                        if "text" in b
                        else {
                            "type": "image_url",
                            "image_url": {"url": b["image"]["source"]["uri"]},
                        }
                        for b in parts
                    ],
                }
            )
    return out


def _result_text(content: Sequence[Mapping[str, Any]]) -> str:
    return "".join(c["text"] if "text" in c else json.dumps(c.get("json")) for c in content)


def from_openai_messages(messages: Iterable[Mapping[str, Any]]) -> list[Message]:
    """Our messages for chat-completions messages (system messages dropped: a node's
    ``system`` holds it). A tool message's content that is a JSON object or list is a
    ``json`` block, any other a ``text`` block."""
    out: list[Message] = []
    for message in messages:
        role = message["role"]
        if role == "tool":
            out.append(
                {
                    "role": "user",
                    "content": [
                        {
                            "toolResult": {
                                "toolUseId": message["tool_call_id"],
                                "content": [_result_block(message["content"])],
                                "status": "success",
                            }
                        }
                    ],
                }
            )
        elif role == "assistant":
            out.append(assistant_message(message))
        elif role == "user":
            content = message["content"]
            if isinstance(content, str):
                out.append({"role": "user", "content": [{"text": content}]})
            else:
                out.append(
                    {
                        "role": "user",
                        "content": [
                            {"text": p["text"]}
                            if p["type"] == "text"
                            else {
                                "image": {
                                    "format": _format(p["image_url"]["url"]),
                                    "source": {"uri": p["image_url"]["url"]},
                                }
                            }
                            for p in content
                        ],
                    }
                )
    return out


def _format(uri: str) -> str:
    ext = uri.rsplit(".", 1)[-1].lower()
    return "jpeg" if ext == "jpg" else ext


def _result_block(content: str) -> dict[str, Any]:
    try:
        value = json.loads(content)
    except ValueError:
        return {"text": content}
    return {"json": value} if isinstance(value, dict | list) else {"text": content}


def assistant_message(message: Mapping[str, Any]) -> Message:
    content: list[dict[str, Any]] = []
    if message.get("content"):
        content.append({"text": message["content"]})
    for call in message.get("tool_calls") or ():
        arguments = call["function"].get("arguments") or "{}"
        content.append(
            {
                "toolUse": {
                    "toolUseId": call["id"],
                    "name": call["function"]["name"],
                    "input": json.loads(arguments),
                }
            }
        )
    return {"role": "assistant", "content": content}


def from_openai(reply: Mapping[str, Any], model: str, latency_ms: float) -> ModelResponse:
    choice = reply["choices"][0]
    usage = reply.get("usage") or {}
    return ModelResponse(
        message=assistant_message(choice["message"]),
        stop_reason=_STOP.get(choice.get("finish_reason") or "", str(choice.get("finish_reason"))),
        usage=Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))),
        model=str(reply.get("model") or model),
        latency_ms=latency_ms,
    )


def from_sse(lines: Iterable[str], model: str, on_text: TokenSink | None) -> dict[str, Any]:
    """A streamed reply's ``data:`` lines put back into one chat-completions reply."""
    text: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish, usage, name = None, None, model
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        chunk = json.loads(data)
        name = chunk.get("model") or name
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content"):
                text.append(delta["content"])
                if on_text is not None:
                    on_text(delta["content"])
            for call in delta.get("tool_calls") or ():
                slot = calls.setdefault(
                    call.get("index", 0), {"id": "", "function": {"name": "", "arguments": ""}}
                )
                slot["id"] = call.get("id") or slot["id"]
                function = call.get("function") or {}
                slot["function"]["name"] += function.get("name") or ""
                slot["function"]["arguments"] += function.get("arguments") or ""
            finish = choice.get("finish_reason") or finish
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return {
        "model": name,
        "choices": [{"message": message, "finish_reason": finish}],
        "usage": usage,
    }


class OpenAIModel:
    """A :class:`~engine.messages.ChatModel` for the endpoint at ``base_url`` (``.../v1``)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout_s: float = 120.0,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = client or httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s
        )
        self.clock = clock

    def converse(self, request: ModelRequest, on_text: TokenSink | None = None) -> ModelResponse:
        started = self.clock()
        try:
            if on_text is None:
                reply = self.client.post("/chat/completions", json=to_openai(request))
                reply.raise_for_status()
                body = reply.json()
            else:
                with self.client.stream(
                    "POST", "/chat/completions", json=to_openai(request, stream=True)
                ) as reply:
                    if reply.is_error:
                        reply.read()
                    reply.raise_for_status()
                    body = from_sse(reply.iter_lines(), request.model, on_text)
            return from_openai(body, request.model, (self.clock() - started) * 1000)
        except ModelError:
            raise
        except Exception as exc:  # every failure is classified once, here
            raise classify(exc) from exc
