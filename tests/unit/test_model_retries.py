"""Model errors through the retry policy: a throttled model call (Bedrock's
ThrottlingException, an OpenAI-compatible 429 or 5xx) is retried with backoff as a delayed
hop, by default on every model node; a bad request (400, validation) fails the task at once
with the provider's message, whatever the policy says."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.stub import Stubber

from engine.agents import model_toolkit
from engine.errors import GraphValidationError
from engine.messages import ModelError, text_of
from engine.retry_policy import MODEL_RETRY, RetryPolicy, raised_from
from engine.toolkits.research import toolkit as research
from engine.tools import ToolError, Toolkit
from engine.validation import build_graph
from functions.models import Providers
from functions.models.bedrock import BedrockModel
from functions.models.openai import classify as classify_openai
from tests.models import bedrock_client, http_status_error
from tests.worlds import World

THROTTLED = {"code": "ThrottlingException", "retryable": True, "message": "slow down"}
INVALID = {"code": "ValidationException", "message": "max_tokens must be at most 4096"}


def toolkit(resolve: Any = None) -> Toolkit:
    tools = Toolkit("model-retries")
    tools.include(research)
    tools.include(model_toolkit(research, resolve or Providers()))
    return tools


def ask(answer: Any, **node: Any) -> dict[str, Any]:
    """A graph of one scripted model node answering ``answer``."""
    spec = {"provider": "scripted", "responses": [answer]}
    return {"entry": "ask", "nodes": {"ask": {"llm": spec, **node}}, "edges": {"ask": "END"}}


def policy_of(doc: dict[str, Any], tools: Toolkit) -> RetryPolicy | None:
    return build_graph(doc, tools.names(), toolkit=tools).nodes["ask"].failure.retry


# -- the default --------------------------------------------------------------------------------
def test_a_model_node_retries_model_errors_by_default_and_says_so_in_its_canonical_form() -> None:
    tools = toolkit()
    assert policy_of(ask("hi"), tools) == MODEL_RETRY
    assert MODEL_RETRY.retry_on == ("ModelError",) and MODEL_RETRY.max_attempts == 4
    graph = build_graph(ask("hi"), tools.names(), toolkit=tools)
    assert graph.to_dict()["nodes"]["ask"]["retry"] == MODEL_RETRY.to_dict()
    # A node's own retry, or the graph's defaults, replace it
    own = ask("hi", retry={"max_attempts": 1})
    assert policy_of(own, tools) == RetryPolicy(max_attempts=1)
    defaults = {**ask("hi"), "defaults": {"retry": {"max_attempts": 2}}}
    assert policy_of(defaults, tools) == RetryPolicy(max_attempts=2)


def test_an_agents_failure_keys_go_to_its_model_node() -> None:
    tools = toolkit()
    doc = {
        "entry": "agent",
        "nodes": {
            "agent": {"agent": {"tools": ["calculator"], "responses": ["4"]},
                      "timeout_s": 30, "on_error": "sorry"},
            "sorry": {"tool": "calculator"},
        },
        "edges": {"sorry": "END"},
    }  # fmt: skip
    graph = build_graph(doc, tools.names(), toolkit=tools)
    model, calls = graph.nodes["agent"], graph.nodes["agent_tools"]
    assert (model.failure.retry, model.failure.timeout_s, model.failure.on_error) == (
        MODEL_RETRY, 30.0, "sorry")  # fmt: skip
    assert calls.failure.retry is None  # a tool's failure is a result the model sees
    doc["nodes"]["agent"]["retries"] = 3
    with pytest.raises(GraphValidationError, match="'retries' is not one of them"):
        build_graph(doc, tools.names(), toolkit=tools)


# -- what is retried ----------------------------------------------------------------------------
def _raised_by(error: ModelError) -> Any:
    """What the retry policy sees of a model node's failure: the tool's error, caused by the
    provider's."""
    try:
        try:
            raise error
        except ModelError as exc:
            raise ToolError("llm", "ModelError", str(exc)) from exc
    except ToolError as wrapped:
        return raised_from(wrapped.__cause__ or wrapped)


@pytest.mark.parametrize(("status", "retried"), [(429, True), (500, True), (503, True),
                                                 (400, False), (401, False)])  # fmt: skip
def test_an_openai_429_or_5xx_is_retried_and_a_4xx_is_not(status: int, retried: bool) -> None:
    raised = _raised_by(classify_openai(http_status_error(status)))
    assert MODEL_RETRY.retries(raised) is retried
    assert RetryPolicy().retries(raised) is retried  # LangGraph's default retry_on agrees
    # Naming ModelError retries only what the provider says is worth retrying
    assert RetryPolicy(retry_on=("ModelError",)).retries(raised) is retried


def test_a_non_retryable_model_error_is_never_retried_even_when_named() -> None:
    bad = _raised_by(ModelError("bedrock", "bad model id", retryable=False, code="Validation"))
    assert bad.never and "ModelError" in bad.types
    assert not RetryPolicy(retry_on=("ModelError", "Exception")).retries(bad)


# -- as delayed hops ----------------------------------------------------------------------------
def test_a_throttled_model_call_is_retried_with_backoff_as_delayed_hops() -> None:
    # Given a model node whose model is throttled on its first two attempts
    world = World(toolkit())
    run_id = world.start(ask({"fail": {**THROTTLED, "times": 2}, "text": "hello"}),
                         {"messages": ["hi"]})  # fmt: skip
    delays = []
    # When each hop is delivered once its delay has passed
    while world.queue.hops:
        hop = world.queue.hops.popleft()
        world.clock.now += hop.delay_s or 0.0
        outcome = world.deliver(hop)
        if outcome == "retrying":
            delays.append(world.queue.hops[-1].delay_s)
    # Then the attempts were held 1 and 2 seconds (plus up to a second of jitter) apart
    assert len(delays) == 2
    assert 1 <= delays[0] < 2 and 2 <= delays[1] < 3
    attempts = world.store.list_attempts(run_id, 0)
    assert [(a.attempt, a.error_type) for a in attempts] == [(1, "ModelError"), (2, "ModelError")]
    assert "ThrottlingException" in attempts[0].error
    run = world.store.get_run(run_id)
    assert run.status == "completed" and text_of(run.state["messages"][-1]) == "hello"


def test_a_model_throttled_past_its_attempts_fails_the_run_saying_so() -> None:
    world = World(toolkit())
    run_id = world.start(ask({"fail": THROTTLED, "text": "never"}), {"messages": ["hi"]})
    while world.queue.hops:
        hop = world.queue.hops.popleft()
        world.clock.now += hop.delay_s or 0.0
        world.deliver(hop)
    run = world.store.get_run(run_id)
    assert run.status == "failed" and "ThrottlingException" in str(run.error)
    assert len(world.store.list_attempts(run_id, 0)) == MODEL_RETRY.max_attempts - 1


def test_a_bad_request_fails_the_task_at_once_with_the_providers_message() -> None:
    world = World(toolkit())
    doc = ask({"fail": INVALID, "text": "never"}, retry={"retry_on": ["ModelError"]})
    run_id = world.start(doc, {"messages": ["hi"]})
    world.drain()
    run = world.store.get_run(run_id)
    assert run.status == "failed" and "max_tokens must be at most 4096" in str(run.error)
    assert world.store.list_attempts(run_id, 0) == []


def test_a_bedrock_throttling_exception_is_retried_and_the_next_attempt_answers() -> None:
    # Given Bedrock (its requests checked against the service model) throttling once
    client = bedrock_client()
    stubber = Stubber(client)
    stubber.add_client_error("converse", "ThrottlingException", "Too many requests", 429)
    stubber.add_response("converse", {
        "output": {"message": {"role": "assistant", "content": [{"text": "hello"}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 3, "outputTokens": 1, "totalTokens": 4},
        "metrics": {"latencyMs": 12},
    })  # fmt: skip
    bedrock = BedrockModel(client)
    world = World(toolkit(lambda _spec: bedrock))
    doc = {"entry": "ask", "nodes": {"ask": {"llm": {"provider": "bedrock", "model": "m"}}},
           "edges": {"ask": "END"}}  # fmt: skip
    with stubber:
        run_id = world.start(doc, {"messages": ["hi"]})
        # When the throttled attempt's retry is delivered at its time
        first = world.queue.hops.popleft()
        assert world.deliver(first) == "retrying"
        (retry,) = world.queue.hops
        world.clock.now += retry.delay_s or 0.0
        world.drain()
        stubber.assert_no_pending_responses()
    # Then the second attempt's answer is the run's
    run = world.store.get_run(run_id)
    assert run.status == "completed" and text_of(run.state["messages"][-1]) == "hello"
    (attempt,) = world.store.list_attempts(run_id, 0)
    assert "ThrottlingException" in attempt.error and retry.attempt == 2


def test_retry_on_may_name_a_providers_error_code() -> None:
    throttled = _raised_by(
        ModelError("bedrock", "slow down", retryable=True, code="ThrottlingException")
    )
    unavailable = _raised_by(
        ModelError("bedrock", "try later", retryable=True, code="ServiceUnavailableException")
    )
    only_throttling = RetryPolicy(retry_on=("ThrottlingException",))
    assert only_throttling.retries(throttled) and not only_throttling.retries(unavailable)
    assert throttled.type == "ModelError"  # what an attempt records stays the class


@pytest.mark.parametrize(
    ("headers", "held"),
    [({"retry-after": "30"}, 30.0), ({"retry-after-ms": "20000"}, 20.0),
     ({"retry-after": "3600"}, 60.0), ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, None)],
)  # fmt: skip
def test_a_429s_retry_after_holds_the_retry_that_long_within_the_policys_ceiling(
    headers: dict[str, str], held: float | None
) -> None:
    raised = _raised_by(classify_openai(http_status_error(429, headers=headers)))
    delay = MODEL_RETRY.delay(1, "r:0:ask:1", raised)
    if held is None:  # a date is not read: the backoff stands
        assert delay == MODEL_RETRY.interval(1, "r:0:ask:1")
    else:  # at most max_interval_s (60 s by default)
        assert delay == held


def test_a_retry_after_reaches_the_delayed_hop() -> None:
    world = World(toolkit())
    world.start(ask({"fail": {**THROTTLED, "times": 1, "retry_after_s": 30}, "text": "ok"}),
                {"messages": ["hi"]})  # fmt: skip
    assert world.deliver(world.queue.hops.popleft()) == "retrying"
    (retry,) = world.queue.hops
    assert (retry.attempt, retry.delay_s) == (2, 30.0)
