"""The scripted model: answers listed in the node's settings (``responses``) or a JSON file
(``responses_file``), for tests and offline examples (LangGraph's ``GenericFakeChatModel``).

The answer to a request is the one at the index of the number of assistant messages already
in the conversation, so that a task delivered twice, or run in another process, gets the
same answer (a counter would not). Each answer is one of:

- a string: the final text;
- ``{"text": "...", "tool_calls": [{"name": ..., "input": {...}, "id"?: ...}]}``;
- ``{"structured": {...}}``: the answer of a node with a ``schema``;
- ``{"content": [<content blocks>]}``: the message as is;
- any of these with ``"fail": {"code", "message"?, "retryable"?, "times"?,
  "retry_after_s"?}``: the call
  raises that model error on its first ``times`` attempts (every attempt without ``times``),
  then answers: a throttled endpoint (``{"code": "ThrottlingException", "retryable": true,
  "times": 2}``) or a bad request (``{"code": "ValidationException"}``), for the retry policy.

Tokens are estimated (about four characters each), so that usage and cost show numbers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from engine.messages import (
    STRUCTURED_TOOL,
    ModelError,
    ModelRequest,
    ModelResponse,
    TokenSink,
    Usage,
    normalize,
    text_of,
)

PROVIDER = "scripted"


class ScriptedModel:
    """A :class:`~engine.messages.ChatModel` answering from a list."""

    def __init__(self, responses: Sequence[Any] | None = None) -> None:
        self.responses = responses

    def converse(self, request: ModelRequest, on_text: TokenSink | None = None) -> ModelResponse:
        responses = self.responses if self.responses is not None else load(request.settings)
        turn = sum(1 for m in request.messages if m.get("role") == "assistant")
        if turn >= len(responses):
            raise ModelError(
                PROVIDER,
                f"no scripted answer for turn {turn} (the script has {len(responses)})",
                retryable=False,
                code="ScriptEnded",
            )
        item = responses[turn]
        if isinstance(item, Mapping) and "fail" in item:
            _fail(item["fail"], turn, request.attempt)
            item = {k: v for k, v in item.items() if k != "fail"}
        message = answer(item, turn, request.force_tool)
        text = text_of(message)
        if on_text is not None and text:
            for i in range(0, len(text), 16):
                on_text(text[i : i + 16])
        calls = any("toolUse" in b for b in message["content"])
        seen = sum(len(json.dumps(m.get("content", []))) for m in request.messages)
        return ModelResponse(
            message=message,
            stop_reason="tool_use" if calls else "end_turn",
            usage=Usage(
                input_tokens=max(1, seen // 4),
                output_tokens=max(1, len(json.dumps(message["content"])) // 4),
            ),
            model=request.model or PROVIDER,
        )


def _fail(spec: Any, turn: int, attempt: int) -> None:
    """Raise the scripted model error of answer ``turn`` while ``attempt`` is one it fails."""
    if not isinstance(spec, Mapping) or not isinstance(spec.get("code"), str):
        raise ModelError(PROVIDER, f"answer {turn}: fail needs a code", retryable=False)
    times = spec.get("times")
    if times is None or attempt <= int(times):
        message = str(spec.get("message", f"scripted {spec['code']} on attempt {attempt}"))
        wait = spec.get("retry_after_s")
        raise ModelError(
            PROVIDER, message, retryable=bool(spec.get("retryable", False)), code=spec["code"],
            retry_after_s=float(wait) if isinstance(wait, int | float) else None,
        )  # fmt: skip


def load(settings: Mapping[str, Any]) -> list[Any]:
    """The answers a node's settings list, or its ``responses_file`` holds."""
    if "responses" in settings:
        return list(settings["responses"])
    path = settings.get("responses_file")
    if not path:
        raise ModelError(
            PROVIDER,
            "a scripted model needs responses or responses_file",
            retryable=False,
            code="NoScript",
        )
    try:
        found = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(
            PROVIDER, f"cannot read {path}: {exc}", retryable=False, code="NoScript"
        ) from exc
    if not isinstance(found, list):
        raise ModelError(PROVIDER, f"{path} holds no list", retryable=False, code="NoScript")
    return found


def answer(item: Any, turn: int, force: str | None = None) -> dict[str, Any]:
    """The assistant message one scripted answer stands for."""
    if isinstance(item, str):
        return {"role": "assistant", "content": [{"text": item}]}
    if not isinstance(item, Mapping):
        raise ModelError(PROVIDER, f"answer {turn} is {type(item).__name__}", retryable=False)
    if "content" in item:
        return normalize({"role": "assistant", "content": item["content"]}, f"answer {turn}")
    content: list[dict[str, Any]] = []
    if item.get("text"):
        content.append({"text": str(item["text"])})
    for j, call in enumerate(item.get("tool_calls", ())):
        ident = call.get("id") or f"call_{turn}_{j}"
        content.append(
            {
                "toolUse": {
                    "toolUseId": ident,
                    "name": call["name"],
                    "input": dict(call.get("input", {})),
                }
            }
        )
    if "structured" in item:
        name = force or STRUCTURED_TOOL
        content.append(
            {
                "toolUse": {
                    "toolUseId": f"call_{turn}_out",
                    "name": name,
                    "input": dict(item["structured"]),
                }
            }
        )
    return {"role": "assistant", "content": content or [{"text": ""}]}
