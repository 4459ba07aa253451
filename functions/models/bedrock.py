"""Amazon Bedrock through the Converse and ConverseStream APIs (boto3 ``bedrock-runtime``).

Credentials are the Lambda role's (or the environment's, locally): never the graph's. The
conversion to and from Converse is pure (:func:`to_converse`, :func:`from_converse_message`)
and errors are classified in one place (:func:`classify`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from engine.messages import (
    Message,
    ModelError,
    ModelRequest,
    ModelResponse,
    TokenSink,
    Usage,
)

PROVIDER = "bedrock"
RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "ServiceUnavailableException",
        "InternalServerException",
        "ModelNotReadyException",
        "ModelTimeoutException",
        "ModelStreamErrorException",
        "ServiceQuotaExceededException",
        "TooManyRequestsException",
    }
)
_INFERENCE = {
    "max_tokens": "maxTokens",
    "temperature": "temperature",
    "top_p": "topP",
    "stop": "stopSequences",
}


def classify(exc: BaseException) -> ModelError:
    """The one place a Bedrock failure is judged worth retrying (throttling, 5xx, timeouts)
    or not (a bad request, access denied, an unknown model)."""
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    transient = (
        ReadTimeoutError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ConnectionClosedError,
    )
    if isinstance(exc, transient):
        return ModelError(PROVIDER, str(exc), retryable=True, code=type(exc).__name__)
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "")) or "ClientError"
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        canonical = code[:1].upper() + code[1:]  # stream errors arrive as throttlingException
        retryable = canonical in RETRYABLE_CODES or status >= 500 or status == 429
        return ModelError(
            PROVIDER, str(error.get("Message", exc)), retryable=retryable, code=canonical
        )
    return ModelError(PROVIDER, f"{type(exc).__name__}: {exc}", retryable=False)


# -- conversion --------------------------------------------------------------------------------
def to_converse(request: ModelRequest) -> dict[str, Any]:
    """The ``converse``/``converse_stream`` parameters for a request."""
    params: dict[str, Any] = {
        "modelId": request.model,
        "messages": to_converse_messages(request.messages),
    }
    if request.system:
        params["system"] = [{"text": request.system}]
    config = {_INFERENCE[k]: v for k, v in request.inference.items() if k in _INFERENCE}
    if config:
        params["inferenceConfig"] = config
    if request.tools:
        tools = []
        for tool in request.tools:
            spec: dict[str, Any] = {
                "name": tool.name,
                "inputSchema": {"json": dict(tool.input_schema)},
            }
            if tool.description:
                spec["description"] = tool.description
            tools.append({"toolSpec": spec})
        params["toolConfig"] = {"tools": tools}
        if request.force_tool:
            params["toolConfig"]["toolChoice"] = {"tool": {"name": request.force_tool}}
    return params


def to_converse_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Converse messages: roles alternate, so consecutive messages of one role (the tool
    results of one round, each its own message in the state) become one."""
    out: list[dict[str, Any]] = []
    for message in messages:
        content = [_block_out(b) for b in message["content"]]
        if out and out[-1]["role"] == message["role"]:
            out[-1]["content"].extend(content)
        else:
            out.append({"role": message["role"], "content": content})
    return out


def _block_out(block: Mapping[str, Any]) -> dict[str, Any]:
    if "image" in block:
        image = block["image"]
        return {
            "image": {
                "format": image["format"],
                "source": {"s3Location": {"uri": image["source"]["uri"]}},
            }
        }
    if "toolResult" in block:
        result = block["toolResult"]
        return {
            "toolResult": {
                "toolUseId": result["toolUseId"],
                "content": [dict(c) for c in result["content"]],
                "status": result.get("status", "success"),
            }
        }
    if "toolUse" in block:
        use = block["toolUse"]
        return {
            "toolUse": {
                "toolUseId": use["toolUseId"],
                "name": use["name"],
                "input": dict(use["input"]),
            }
        }
    return {"text": block["text"]}


def from_converse_message(message: Mapping[str, Any]) -> Message:
    """Our message for a Converse message (the blocks this engine knows; others dropped)."""
    content: list[dict[str, Any]] = []
    for block in message.get("content", ()):
        if "text" in block:
            content.append({"text": block["text"]})
        elif "toolUse" in block:
            use = block["toolUse"]
            content.append(
                {
                    "toolUse": {
                        "toolUseId": use["toolUseId"],
                        "name": use["name"],
                        "input": dict(use.get("input") or {}),
                    }
                }
            )
        elif "toolResult" in block:
            result = block["toolResult"]
            content.append(
                {
                    "toolResult": {
                        "toolUseId": result["toolUseId"],
                        "content": [dict(c) for c in result["content"]],
                        "status": result.get("status", "success"),
                    }
                }
            )
        elif "image" in block and "s3Location" in block["image"].get("source", {}):
            uri = block["image"]["source"]["s3Location"]["uri"]
            content.append({"image": {"format": block["image"]["format"], "source": {"uri": uri}}})
    return {"role": message["role"], "content": content}


def from_converse(reply: Mapping[str, Any], model: str, latency_ms: float) -> ModelResponse:
    usage = reply.get("usage", {})
    return ModelResponse(
        message=from_converse_message(reply["output"]["message"]),
        stop_reason=str(reply.get("stopReason", "")),
        usage=Usage(int(usage.get("inputTokens", 0)), int(usage.get("outputTokens", 0))),
        model=model,
        latency_ms=latency_ms,
    )


def from_stream(
    events: Iterable[Mapping[str, Any]],
    model: str,
    on_text: TokenSink | None,
    clock: Callable[[], float],
    started: float,
) -> ModelResponse:
    """A ConverseStream's events (as botocore parses them) put back into one response: text
    deltas go to ``on_text`` as they come; a tool call's input arrives as JSON in pieces."""
    blocks: dict[int, dict[str, Any]] = {}
    partial: dict[int, list[str]] = {}
    stop, usage = "", Usage()
    role = "assistant"
    for event in events:
        if "messageStart" in event:
            role = event["messageStart"].get("role", role)
        elif "contentBlockStart" in event:
            start = event["contentBlockStart"]
            use = start.get("start", {}).get("toolUse")
            if use is not None:
                index = start["contentBlockIndex"]
                blocks[index] = {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}
                partial[index] = []
        elif "contentBlockDelta" in event:
            delta = event["contentBlockDelta"]
            index, piece = delta["contentBlockIndex"], delta["delta"]
            if "text" in piece:
                blocks.setdefault(index, {"text": ""})["text"] += piece["text"]
                if on_text is not None:
                    on_text(piece["text"])
            elif "toolUse" in piece:
                partial.setdefault(index, []).append(piece["toolUse"].get("input", ""))
        elif "messageStop" in event:
            stop = event["messageStop"].get("stopReason", "")
        elif "metadata" in event:
            found = event["metadata"].get("usage", {})
            usage = Usage(int(found.get("inputTokens", 0)), int(found.get("outputTokens", 0)))
    for index, pieces in partial.items():
        text = "".join(pieces)
        blocks[index]["toolUse"]["input"] = json.loads(text) if text else {}
    content = [blocks[i] for i in sorted(blocks)]
    return ModelResponse(
        {"role": role, "content": content}, stop, usage, model, (clock() - started) * 1000
    )


class BedrockModel:
    """A :class:`~engine.messages.ChatModel` over an injected ``bedrock-runtime`` client."""

    def __init__(self, client: Any, clock: Callable[[], float] = time.perf_counter) -> None:
        self.client = client
        self.clock = clock

    def converse(self, request: ModelRequest, on_text: TokenSink | None = None) -> ModelResponse:
        params = to_converse(request)
        started = self.clock()
        try:
            if on_text is None:
                reply = self.client.converse(**params)
                return from_converse(reply, request.model, (self.clock() - started) * 1000)
            stream = self.client.converse_stream(**params)["stream"]
            return from_stream(stream, request.model, on_text, self.clock, started)
        except ModelError:
            raise
        except Exception as exc:  # every failure is classified once, here
            raise classify(exc) from exc
