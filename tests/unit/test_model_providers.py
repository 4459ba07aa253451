"""The model providers (functions/models/): each converts the message model to its API and
back (a round trip per provider), answers a request, and classifies its errors in one place.

Bedrock's requests and responses are checked by botocore's Stubber against the
bedrock-runtime service model; ConverseStream's events are dicts in the shape botocore
parses the event stream into, each validated against the service model's union. The
OpenAI-compatible path runs against a small HTTP server started here (streaming too)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from botocore.stub import Stubber
from botocore.validate import ParamValidator

from engine.messages import ModelError, ModelRequest, ToolSpec
from functions.models import LlmConfig, Providers
from functions.models.bedrock import (
    BedrockModel,
    from_converse_message,
    to_converse,
    to_converse_messages,
)
from functions.models.bedrock import classify as classify_bedrock
from functions.models.openai import OpenAIModel, from_openai_messages, to_openai_messages
from functions.models.scripted import ScriptedModel
from tests.models import StreamClient, bedrock_client

CONVERSATION = [
    {
        "role": "user",
        "content": [
            {"text": "What is in the picture, and what is 6 * 7?"},
            {"image": {"format": "png", "source": {"uri": "s3://bucket/cat.png"}}},
        ],
    },
    {
        "role": "assistant",
        "content": [
            {"text": "A cat. Let me compute."},
            {
                "toolUse": {
                    "toolUseId": "t1",
                    "name": "calculator",
                    "input": {"expression": "6 * 7"},
                }
            },
        ],
    },
    {
        "role": "user",
        "content": [
            {
                "toolResult": {
                    "toolUseId": "t1",
                    "content": [{"json": {"result": 42}}],
                    "status": "success",
                }
            },
        ],
    },
    {"role": "assistant", "content": [{"text": "It is 42."}]},
]
CALC = ToolSpec(
    "calculator",
    "Evaluate arithmetic",
    {
        "type": "object",
        "properties": {"expression": {"type": "string"}},
        "required": ["expression"],
    },
)


def request(**changes: Any) -> ModelRequest:
    base: dict[str, Any] = {
        "model": "anthropic.claude-3-5-haiku-20241022-v1:0",
        "messages": CONVERSATION[:3],
        "system": "Be brief.",
        "tools": (CALC,),
        "inference": {"max_tokens": 256, "temperature": 0},
    }
    return ModelRequest(**{**base, **changes})


@pytest.fixture()
def bedrock() -> Iterator[tuple[Any, Stubber]]:
    client = bedrock_client()
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


# -- Bedrock ----------------------------------------------------------------------------------
def test_bedrock_round_trip_keeps_every_block() -> None:
    converse = to_converse_messages(CONVERSATION)
    assert [from_converse_message(m) for m in converse] == CONVERSATION
    image = converse[0]["content"][1]["image"]
    assert image == {"format": "png", "source": {"s3Location": {"uri": "s3://bucket/cat.png"}}}


def test_bedrock_merges_the_tool_results_of_one_round_into_one_user_message() -> None:
    results = [
        {
            "id": f"t{i}:result",
            "role": "user",
            "content": [
                {
                    "toolResult": {
                        "toolUseId": f"t{i}",
                        "content": [{"text": str(i)}],
                        "status": "success",
                    }
                }
            ],
        }
        for i in (1, 2)
    ]
    converse = to_converse_messages([CONVERSATION[0], CONVERSATION[1], *results])
    assert [m["role"] for m in converse] == ["user", "assistant", "user"]
    assert [b["toolResult"]["toolUseId"] for b in converse[2]["content"]] == ["t1", "t2"]


def test_bedrock_converse_request_and_response_match_the_service_model(bedrock: Any) -> None:
    client, stubber = bedrock
    req = request()
    # Stubber validates the expected parameters against the service model, and the response
    stubber.add_response(
        "converse",
        {
            "output": {
                "message": {
                    "role": "assistant",
                    "content": [
                        {
                            "toolUse": {
                                "toolUseId": "t2",
                                "name": "calculator",
                                "input": {"expression": "1+1"},
                            }
                        }
                    ],
                }
            },
            "stopReason": "tool_use",
            "usage": {"inputTokens": 120, "outputTokens": 18, "totalTokens": 138},
            "metrics": {"latencyMs": 412},
        },
        to_converse(req),
    )
    reply = BedrockModel(client, clock=iter([1.0, 1.5]).__next__).converse(req)
    assert reply.stop_reason == "tool_use"
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (120, 18)
    assert reply.latency_ms == 500.0
    assert reply.message["content"][0]["toolUse"]["input"] == {"expression": "1+1"}


def test_bedrock_structured_output_forces_its_tool(bedrock: Any) -> None:
    client, stubber = bedrock
    req = request(
        tools=(ToolSpec("structured_output", "The answer", {"type": "object"}),),
        force_tool="structured_output",
    )
    params = to_converse(req)
    assert params["toolConfig"]["toolChoice"] == {"tool": {"name": "structured_output"}}
    stubber.add_response(
        "converse",
        {
            "output": {
                "message": {
                    "role": "assistant",
                    "content": [
                        {
                            "toolUse": {
                                "toolUseId": "o",
                                "name": "structured_output",
                                "input": {"n": 42},
                            }
                        }
                    ],
                }
            },
            "stopReason": "tool_use",
            "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
            "metrics": {"latencyMs": 1},
        },
        params,
    )
    assert BedrockModel(client).converse(req).stop_reason == "tool_use"


def test_bedrock_errors_are_classified_once(bedrock: Any) -> None:
    client, stubber = bedrock
    stubber.add_client_error("converse", "ThrottlingException", "Too many requests", 429)
    with pytest.raises(ModelError) as throttled:
        BedrockModel(client).converse(request())
    assert throttled.value.retryable and throttled.value.code == "ThrottlingException"
    stubber.add_client_error("converse", "ValidationException", "bad model id", 400)
    with pytest.raises(ModelError, match="bad model id") as bad:
        BedrockModel(client).converse(request())
    assert not bad.value.retryable
    timeout = ReadTimeoutError(endpoint_url="https://bedrock-runtime.us-east-1.amazonaws.com")
    assert classify_bedrock(timeout).retryable
    stream_error = ClientError(
        {"Error": {"Code": "modelStreamErrorException", "Message": "x"}}, "ConverseStream"
    )
    assert classify_bedrock(stream_error).retryable


STREAM_EVENTS: list[dict[str, Any]] = [
    {"messageStart": {"role": "assistant"}},
    {"contentBlockDelta": {"delta": {"text": "Let me "}, "contentBlockIndex": 0}},
    {"contentBlockDelta": {"delta": {"text": "compute."}, "contentBlockIndex": 0}},
    {"contentBlockStop": {"contentBlockIndex": 0}},
    {
        "contentBlockStart": {
            "start": {"toolUse": {"toolUseId": "t9", "name": "calculator"}},
            "contentBlockIndex": 1,
        }
    },
    {"contentBlockDelta": {"delta": {"toolUse": {"input": '{"expres'}}, "contentBlockIndex": 1}},
    {
        "contentBlockDelta": {
            "delta": {"toolUse": {"input": 'sion": "6*7"}'}},
            "contentBlockIndex": 1,
        }
    },
    {"contentBlockStop": {"contentBlockIndex": 1}},
    {"messageStop": {"stopReason": "tool_use"}},
    {
        "metadata": {
            "usage": {"inputTokens": 50, "outputTokens": 12, "totalTokens": 62},
            "metrics": {"latencyMs": 300},
        }
    },
]


def test_converse_stream_events_have_the_service_models_shape() -> None:
    model = bedrock_client().meta.service_model
    union = model.shape_for("ConverseStreamOutput")
    for event in STREAM_EVENTS:
        report = ParamValidator().validate(event, union)
        assert not report.has_errors(), report.generate_report()
    stream_input = model.operation_model("ConverseStream").input_shape
    report = ParamValidator().validate(to_converse(request()), stream_input)
    assert not report.has_errors(), report.generate_report()


def test_converse_stream_gives_tokens_as_they_come_and_the_whole_message() -> None:
    client = StreamClient(STREAM_EVENTS)
    tokens: list[str] = []
    reply = BedrockModel(client).converse(request(), tokens.append)
    assert tokens == ["Let me ", "compute."]
    assert reply.message == {
        "role": "assistant",
        "content": [
            {"text": "Let me compute."},
            {"toolUse": {"toolUseId": "t9", "name": "calculator", "input": {"expression": "6*7"}}},
        ],
    }
    assert (reply.stop_reason, reply.usage.output_tokens) == ("tool_use", 12)
    assert client.params["modelId"] == request().model


# -- OpenAI-compatible -------------------------------------------------------------------------
def test_openai_round_trip_keeps_every_block() -> None:
    wire = to_openai_messages(request(messages=CONVERSATION))
    assert wire[0] == {"role": "system", "content": "Be brief."}
    assert wire[2]["tool_calls"][0]["function"] == {
        "name": "calculator",
        "arguments": '{"expression": "6 * 7"}',
    }
    assert wire[3] == {"role": "tool", "tool_call_id": "t1", "content": '{"result": 42}'}
    assert from_openai_messages(wire) == CONVERSATION


class _Endpoint(BaseHTTPRequestHandler):
    """A chat-completions endpoint: the first request asks for a tool, the next answers;
    ``"stream": true`` answers with server-sent events."""

    bodies: list[dict[str, Any]] = []
    status = 200

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).bodies.append({**body, "_auth": self.headers.get("Authorization")})
        if self.path != "/v1/chat/completions" or type(self).status != 200:
            code = type(self).status if type(self).status != 200 else 404
            payload = json.dumps({"error": {"message": "slow down"}}).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        if body.get("stream"):
            chunks = [
                {
                    "model": "m",
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": "It "}}],
                },
                {"model": "m", "choices": [{"index": 0, "delta": {"content": "is 42."}}]},
                {
                    "model": "m",
                    "choices": [
                        {
                            "index": 0,
                            "delta": {
                                "tool_calls": [
                                    {
                                        "index": 0,
                                        "id": "c1",
                                        "type": "function",
                                        "function": {"name": "calculator", "arguments": '{"expr'},
                                    }
                                ]
                            },
                        }
                    ],
                },
                {
                    "model": "m",
                    "choices": [
                        {
                            "index": 0,
                            "delta": {
                                "tool_calls": [
                                    {"index": 0, "function": {"arguments": 'ession": "1"}'}}
                                ]
                            },
                            "finish_reason": "tool_calls",
                        }
                    ],
                },
                {
                    "model": "m",
                    "choices": [],
                    "usage": {"prompt_tokens": 9, "completion_tokens": 4},
                },
            ]
            payload = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.wfile.write(payload.encode())
            return
        reply = {
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "It is 42."},
                }
            ],
            "usage": {"prompt_tokens": 30, "completion_tokens": 5},
        }
        payload = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture()
def endpoint() -> Iterator[str]:
    _Endpoint.bodies = []
    _Endpoint.status = 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_openai_endpoint_answers_with_usage(endpoint: str) -> None:
    reply = OpenAIModel(endpoint, "sk-test").converse(request())
    assert reply.message == {"role": "assistant", "content": [{"text": "It is 42."}]}
    assert (reply.stop_reason, reply.usage.input_tokens, reply.usage.output_tokens) == (
        "end_turn",
        30,
        5,
    )
    sent = _Endpoint.bodies[0]
    assert sent["_auth"] == "Bearer sk-test"
    assert sent["max_tokens"] == 256 and sent["tools"][0]["function"]["name"] == "calculator"
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "tool"]


def test_openai_endpoint_streams_tokens_and_tool_calls(endpoint: str) -> None:
    tokens: list[str] = []
    reply = OpenAIModel(endpoint).converse(request(), tokens.append)
    assert tokens == ["It ", "is 42."]
    assert reply.message == {
        "role": "assistant",
        "content": [
            {"text": "It is 42."},
            {"toolUse": {"toolUseId": "c1", "name": "calculator", "input": {"expression": "1"}}},
        ],
    }
    assert (reply.stop_reason, reply.usage.output_tokens) == ("tool_use", 4)
    assert _Endpoint.bodies[0]["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(("status", "retryable"), [(429, True), (503, True), (400, False)])
def test_openai_errors_are_classified_once(endpoint: str, status: int, retryable: bool) -> None:
    _Endpoint.status = status
    with pytest.raises(ModelError, match="slow down") as failed:
        OpenAIModel(endpoint).converse(request())
    assert failed.value.retryable is retryable and failed.value.code == str(status)


def test_an_unreachable_endpoint_is_worth_retrying() -> None:
    with pytest.raises(ModelError) as failed:
        OpenAIModel("http://127.0.0.1:9/v1", timeout_s=2).converse(request())
    assert failed.value.retryable


# -- scripted and configuration ---------------------------------------------------------------
def test_scripted_answers_by_turn_so_a_redelivery_gets_the_same_answer() -> None:
    script = [{"tool_calls": [{"name": "calculator", "input": {"expression": "6*7"}}]}, "42."]
    model = ScriptedModel(script)
    first = model.converse(request(messages=CONVERSATION[:1]))
    assert first == model.converse(request(messages=CONVERSATION[:1]))
    assert first.message["content"][0]["toolUse"]["toolUseId"] == "call_0_0"
    assert model.converse(request(messages=CONVERSATION[:3])).message["content"] == [
        {"text": "42."}
    ]
    with pytest.raises(ModelError, match="no scripted answer for turn 2") as ended:
        model.converse(request(messages=CONVERSATION))
    assert not ended.value.retryable


def test_scripted_round_trip_of_full_content_blocks() -> None:
    model = ScriptedModel([{"content": CONVERSATION[1]["content"]}])
    assert model.converse(request(messages=CONVERSATION[:1])).message == CONVERSATION[1]


def test_llm_configuration_switches_every_node(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (
        LlmConfig.parse("openai=http://localhost:11434/v1").base_url == "http://localhost:11434/v1"
    )
    assert LlmConfig.parse("bedrock").provider == "bedrock"
    with pytest.raises(ValueError, match="scripted, bedrock or openai=URL"):
        LlmConfig.parse("claude")
    providers = Providers(LlmConfig.parse("scripted"))
    assert isinstance(providers({"provider": "bedrock", "model": "m"}), ScriptedModel)


# -- round trips of any conversation ------------------------------------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_TEXT = st.text(min_size=1, max_size=20)
_IDS = st.text(alphabet="abcdefghij0123456789_", min_size=1, max_size=8)
_JSON = st.dictionaries(
    st.text(alphabet="abcxyz", min_size=1, max_size=4),
    st.one_of(st.integers(-1000, 1000), st.text(max_size=10), st.booleans()),
    min_size=1,
    max_size=3,
)


@st.composite
def conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Alternating turns: a user's text (and an image), the assistant's text and tool calls,
    the tool results of those calls; every tool call answered, as providers require."""
    messages: list[dict[str, Any]] = []
    turns = draw(st.integers(1, 3))
    for turn in range(turns):
        user: list[dict[str, Any]] = [{"text": draw(_TEXT)}]
        if draw(st.booleans()):
            user.append({"image": {"format": "png", "source": {"uri": f"s3://b/{turn}.png"}}})
        messages.append({"role": "user", "content": user})
        calls = [
            {
                "toolUse": {
                    "toolUseId": f"t{turn}_{i}_{draw(_IDS)}",
                    "name": draw(_IDS),
                    "input": draw(_JSON),
                }
            }
            for i in range(draw(st.integers(0, 2)))
        ]
        messages.append({"role": "assistant", "content": [{"text": draw(_TEXT)}, *calls]})
        if calls:
            results = [
                {
                    "toolResult": {
                        "toolUseId": c["toolUse"]["toolUseId"],
                        "status": "success",
                        "content": [
                            draw(st.sampled_from([{"json": draw(_JSON)}, {"text": draw(_TEXT)}]))
                        ],
                    }
                }
                for c in calls
            ]
            messages.append({"role": "user", "content": results})
            messages.append({"role": "assistant", "content": [{"text": draw(_TEXT)}]})
    return messages


@settings(max_examples=60, deadline=None)
@given(conversations())
def test_any_conversation_survives_the_bedrock_round_trip(messages: list[dict[str, Any]]) -> None:
    assert [from_converse_message(m) for m in to_converse_messages(messages)] == messages


@settings(max_examples=60, deadline=None)
@given(conversations())
def test_any_conversation_survives_the_openai_round_trip(messages: list[dict[str, Any]]) -> None:
    wire = to_openai_messages(request(messages=messages, system=""))
    back = from_openai_messages(wire)
    # OpenAI has a message per tool result (as the state has: each tool call's task writes
    # its own); a text result that reads as a JSON object comes back as a json block (the
    # wire cannot tell them apart)
    assert back == [part for m in messages for part in _as_wire_reads(m)]


def _as_wire_reads(message: dict[str, Any]) -> list[dict[str, Any]]:
    if any("toolResult" in b for b in message["content"]):
        return [{**message, "content": [b]} for b in _wire_blocks(message)]
    return [{**message, "content": _wire_blocks(message)}]


def _wire_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = []
    for block in message["content"]:
        result = block.get("toolResult")
        if result and "text" in result["content"][0]:
            text = result["content"][0]["text"]
            try:
                value = json.loads(text)
            except ValueError:
                value = None
            if isinstance(value, dict | list):
                block = {"toolResult": {**result, "content": [{"json": value}]}}
        content.append(block)
    return content
