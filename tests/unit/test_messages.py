"""The message model (engine/messages.py) and the ``messages`` reducer (LangGraph's
``add_messages``: append, and replace a message whose id is already there)."""

from __future__ import annotations

import pytest

from engine.messages import (
    MessageError,
    ModelError,
    normalize,
    retryable,
    text_message,
    text_of,
    tool_result_message,
    tool_uses,
)
from engine.reducers import messages


def test_a_string_is_a_users_text_message() -> None:
    assert normalize("hi") == {"role": "user", "content": [{"text": "hi"}]}
    assert normalize({"role": "assistant", "content": "yes"}) == {
        "role": "assistant",
        "content": [{"text": "yes"}],
    }


def test_every_block_kind_is_checked_with_its_location() -> None:
    good = {
        "role": "user",
        "content": [
            {"text": "look"},
            {"image": {"format": "png", "source": {"uri": "s3://bucket/cat.png"}}},
            {
                "toolResult": {
                    "toolUseId": "t1",
                    "content": [{"json": {"n": 1}}],
                    "status": "success",
                }
            },
        ],
    }
    assert normalize(good) == good
    with pytest.raises(MessageError, match=r"m\.content\[1\]\.image: by reference"):
        normalize({"role": "user", "content": [{"text": "x"}, {"image": {"bytes": "..."}}]}, "m")
    with pytest.raises(MessageError, match=r"content\[0\]: unknown block 'video'"):
        normalize({"role": "user", "content": [{"video": {}}]})
    with pytest.raises(MessageError, match="role: must be 'user' or 'assistant'"):
        normalize({"role": "system", "content": "be brief"})
    with pytest.raises(MessageError, match="toolUse: needs toolUseId, name and an input"):
        normalize({"role": "assistant", "content": [{"toolUse": {"name": "x"}}]})


def test_tool_calls_and_text_are_read_back() -> None:
    message = {
        "role": "assistant",
        "content": [
            {"text": "let me see"},
            {"toolUse": {"toolUseId": "a", "name": "calc", "input": {"x": 1}}},
            {"toolUse": {"toolUseId": "b", "name": "search", "input": {}}},
        ],
    }
    assert text_of(message) == "let me see"
    assert [c["toolUseId"] for c in tool_uses(message)] == ["a", "b"]


def test_a_tool_result_has_a_stable_id_from_its_call() -> None:
    first = tool_result_message("call_1", {"result": 4})
    again = tool_result_message("call_1", {"result": 4})
    assert first == again and first["id"] == "call_1:result"
    assert first["content"][0]["toolResult"]["content"] == [{"json": {"result": 4}}]
    failed = tool_result_message("call_2", "no such tool", error=True)
    assert failed["content"][0]["toolResult"]["status"] == "error"
    assert failed["content"][0]["toolResult"]["content"] == [{"text": "no such tool"}]


def test_the_reducer_appends_and_replaces_by_id_as_add_messages_does() -> None:
    from langgraph.graph.message import add_messages

    ours = messages(None, [text_message("user", "q", "1"), text_message("assistant", "a", "2")])
    ours = messages(ours, text_message("assistant", "a, edited", "2"))
    ours = messages(ours, text_message("user", "next", "3"))
    # LangGraph, on its own message objects, with the same ids
    theirs = add_messages(
        [],
        [
            {"role": "user", "content": "q", "id": "1"},
            {"role": "assistant", "content": "a", "id": "2"},
        ],
    )
    theirs = add_messages(theirs, [{"role": "assistant", "content": "a, edited", "id": "2"}])
    theirs = add_messages(theirs, [{"role": "user", "content": "next", "id": "3"}])
    assert [(m["id"], text_of(m)) for m in ours] == [(m.id, m.content) for m in theirs]


def test_a_task_delivered_twice_leaves_its_message_once() -> None:
    state = messages(None, [text_message("user", "q", "q")])
    reply = text_message("assistant", "a", "run:1:agent")
    once = messages(state, [reply])
    assert messages(once, [reply]) == once


def test_model_errors_say_whether_they_are_worth_retrying() -> None:
    throttled = ModelError("bedrock", "slow down", retryable=True, code="ThrottlingException")
    assert throttled.retryable and "retryable" in str(throttled)
    bad = ModelError("openai", "bad request", retryable=False, code="400")
    assert not bad.retryable and "not retryable" in str(bad)


def test_a_tools_failure_is_retryable_only_for_a_retryable_model_error() -> None:
    from engine.tools import Tool, ToolContext, ToolError, call_tool

    def throttled(state: object, ctx: object) -> None:
        raise ModelError("bedrock", "slow down", retryable=True, code="ThrottlingException")

    def refused(state: object, ctx: object) -> None:
        raise ModelError("bedrock", "no access", retryable=False, code="AccessDenied")

    ctx = ToolContext("r", "n", 0)
    for fn, want in ((throttled, True), (refused, False)):
        with pytest.raises(ToolError) as failed:
            call_tool(Tool("llm", fn), {}, ctx)
        assert retryable(failed.value) is want
    assert not retryable(ValueError("bug")) and not retryable(None)
