"""Chat messages and the model port: what the engine knows of models, and nothing of SDKs.

A message is a JSON object kept in the run's state, close to Bedrock Converse's shape::

    {"id": "...", "role": "user" | "assistant",
     "content": [{"text": "..."},
                 {"toolUse": {"toolUseId": "...", "name": "...", "input": {...}}},
                 {"toolResult": {"toolUseId": "...", "content": [{"text": "..."} | {"json": ...}],
                                 "status": "success" | "error"}},
                 {"image": {"format": "png", "source": {"uri": "s3://..."}}}],
     "metadata": {...}}

Images travel by reference only (a URI), never as bytes in the state. Every message the
engine writes has a stable id derived from its task (a redelivered task writes the same id,
and the ``messages`` reducer replaces rather than appends: :func:`engine.reducers.messages`).

A provider (Bedrock, an OpenAI-compatible endpoint, a scripted list) is a :class:`ChatModel`:
it turns a :class:`ModelRequest` into a :class:`ModelResponse` and says, through
:class:`ModelError`, whether a failure is worth retrying. Providers live outside the engine.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from engine.errors import HopgraphError

Role = Literal["user", "assistant"]
Message = dict[str, Any]
Block = dict[str, Any]
BLOCK_KINDS = ("text", "toolUse", "toolResult", "image")
STRUCTURED_TOOL = "structured_output"
"""The tool a model is made to call to answer with structured output (``schema``)."""


class MessageError(HopgraphError):
    """A message is not in the shape above (the run fails saying what is wrong)."""


class ModelError(HopgraphError):
    """A model call failed. ``retryable``: throttling, a 5xx or a timeout, worth trying
    again with backoff; anything else (a bad request, access denied) fails the task with the
    provider's message. Each provider classifies its errors in one function."""

    def __init__(
        self, provider: str, message: str, *, retryable: bool, code: str = "",
        retry_after_s: float | None = None,
    ) -> None:  # fmt: skip
        self.provider = provider
        self.retryable = retryable
        self.code = code
        self.retry_after_s = retry_after_s
        """How long the provider asked to wait (an HTTP 429's ``Retry-After``): a retry is
        held at least that long, within its policy's ``max_interval_s``."""
        kind = "retryable" if retryable else "not retryable"
        super().__init__(f"{provider} model error ({code or 'error'}, {kind}): {message}")


def model_error(exc: BaseException | None) -> ModelError | None:
    """The model error behind a task's failure, found through the exception's causes (a
    tool's failure wraps it), or ``None``."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, ModelError):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def retryable(exc: BaseException | None) -> bool:
    """Whether a task's failure is a model error worth retrying (throttling, a 5xx, a
    timeout): the one question a retry policy asks of a model node
    (:func:`engine.retry_policy.raised_from`)."""
    found = model_error(exc)
    return found is not None and found.retryable


# -- building and reading messages -----------------------------------------------------------
def text_message(role: Role, text: str, ident: str | None = None) -> Message:
    message: Message = {"role": role, "content": [{"text": text}]}
    if ident is not None:
        message["id"] = ident
    return message


def tool_result_message(
    tool_use_id: str, result: Any, *, error: bool = False, ident: str | None = None
) -> Message:
    """The user message that answers one tool call: text for a string, ``json`` otherwise."""
    content: list[Block] = (
        [{"text": result}] if isinstance(result, str) else [{"json": _jsonable(result)}]
    )
    block = {
        "toolUseId": tool_use_id,
        "content": content,
        "status": "error" if error else "success",
    }
    return {
        "id": ident or f"{tool_use_id}:result",
        "role": "user",
        "content": [{"toolResult": block}],
    }


def normalize(message: Any, where: str = "message") -> Message:
    """A message in the shape above from what a client may send: a string (a user's text),
    ``{"role", "content": "text"}``, or the full shape (checked)."""
    if isinstance(message, str):
        return text_message("user", message)
    if not isinstance(message, Mapping):
        raise MessageError(
            f"{where}: a message is a string or an object, not {type(message).__name__}"
        )
    role = message.get("role")
    if role not in ("user", "assistant"):
        raise MessageError(f"{where}.role: must be 'user' or 'assistant', not {role!r}")
    content = message.get("content")
    if isinstance(content, str):
        content = [{"text": content}]
    if not isinstance(content, list):
        raise MessageError(f"{where}.content: a string or a list of content blocks")
    for i, block in enumerate(content):
        _check_block(block, f"{where}.content[{i}]")
    out: Message = {**message, "role": role, "content": list(content)}
    return out


def _check_block(block: Any, where: str) -> None:
    if not isinstance(block, Mapping) or len(block) != 1:
        raise MessageError(f"{where}: a block is an object with one of {', '.join(BLOCK_KINDS)}")
    (kind,) = block
    if kind not in BLOCK_KINDS:
        raise MessageError(f"{where}: unknown block {kind!r}; one of {', '.join(BLOCK_KINDS)}")
    body = block[kind]
    if kind == "text" and not isinstance(body, str):
        raise MessageError(f"{where}.text: must be a string")
    if kind == "toolUse" and not (
        isinstance(body, Mapping)
        and isinstance(body.get("toolUseId"), str)
        and isinstance(body.get("name"), str)
        and isinstance(body.get("input"), Mapping)
    ):
        raise MessageError(f"{where}.toolUse: needs toolUseId, name and an input object")
    if kind == "toolResult" and not (
        isinstance(body, Mapping)
        and isinstance(body.get("toolUseId"), str)
        and isinstance(body.get("content"), list)
    ):
        raise MessageError(f"{where}.toolResult: needs toolUseId and a content list")
    if kind == "image" and not (
        isinstance(body, Mapping)
        and isinstance(body.get("format"), str)
        and isinstance(body.get("source"), Mapping)
        and isinstance(body["source"].get("uri"), str)
    ):
        raise MessageError(
            f'{where}.image: by reference: {{"format": "png", "source": '
            '{"uri": "s3://bucket/key"}}'
        )


def text_of(message: Mapping[str, Any]) -> str:
    """The message's text blocks, joined."""
    return "".join(b["text"] for b in message.get("content", ()) if "text" in b)


def tool_uses(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The tool calls an assistant message asks for, in order."""
    return [dict(b["toolUse"]) for b in message.get("content", ()) if "toolUse" in b]


def _jsonable(value: Any) -> Any:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return str(value)


# -- the model port --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool offered to a model: its name, what it does, and its input's JSON schema."""

    name: str
    description: str
    input_schema: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ModelRequest:
    model: str
    messages: Sequence[Message]
    system: str = ""
    tools: Sequence[ToolSpec] = ()
    inference: Mapping[str, Any] = field(default_factory=dict)
    """``max_tokens``, ``temperature``, ``top_p``, ``stop`` (provider-neutral names)."""
    force_tool: str | None = None
    """Make the model call this tool (structured output)."""
    settings: Mapping[str, Any] = field(default_factory=dict)
    """The node's ``llm`` settings, for providers that read their own (``responses``)."""
    attempt: int = 1
    """The task's attempt (a retried model call is attempt 2, 3...): a scripted model may
    fail its first attempts, as a throttled endpoint would."""


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ModelResponse:
    """The assistant's message (without id: the engine gives it one), why it stopped
    (``end_turn``, ``tool_use``, ``max_tokens``...), the tokens it used and its latency."""

    message: Message
    stop_reason: str
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    latency_ms: float = 0.0


TokenSink = Callable[[str], None]
"""Called with each piece of text as a streaming model writes it."""


class ChatModel(Protocol):
    """One provider. ``on_text``: given when the node streams; a provider that cannot
    stream calls it once with the whole text (or never). Raises :class:`ModelError`."""

    def converse(
        self, request: ModelRequest, on_text: TokenSink | None = None
    ) -> ModelResponse: ...


ModelResolver = Callable[[Mapping[str, Any]], ChatModel]
"""The provider for a node's ``llm`` settings (configuration may override the provider)."""
