"""Each function's IAM policy in template.yaml grants exactly the AWS calls its code makes.

The calls are read from the source (tests/unit/aws_calls.py: from the handler, through what
it uses, boto3 operations mapped to IAM actions by botocore's service models); the grants
from the function's ``Policies``, both branches of a condition counted. A call without a
grant would fail on AWS; a grant without a call is privilege nobody needs.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.template.reader import load_template

sys.path.insert(0, str(Path(__file__).parent))
from aws_calls import actions_of, actions_of_toolkits

TEMPLATE = load_template()
FUNCTIONS = {
    name: resource["Properties"]
    for name, resource in TEMPLATE["Resources"].items()
    if resource["Type"] == "AWS::Serverless::Function"
}
TOOLKITS = str(TEMPLATE["Parameters"]["Toolkits"]["Default"]).split(",")
BEDROCK = {"bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"}
DISPATCH = {"sqs:SendMessage": "DispatchBySqs", "lambda:InvokeFunction": "DispatchByLambda"}
STEP_QUEUE = {"Fn::GetAtt": ["StepQueue", "Arn"]}
WEBSOCKET_SELF = {
    "Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:"
    "${AWS::StackName}-websocket"
}
"""The WebSocket function invokes itself ($connect's replay): not a hop, in every mode."""


def statements(policies: list[Any]) -> Iterator[tuple[dict[str, Any], str | None]]:
    """Every statement of a function's policies, with the condition it depends on."""
    for policy in policies:
        assert set(policy) == {"Statement"}, f"a SAM policy template grants too much: {policy}"
        for statement in policy["Statement"]:
            if "Fn::If" in statement:
                condition, granted, otherwise = statement["Fn::If"]
                assert otherwise == {"Ref": "AWS::NoValue"}, statement
                yield granted, condition
            else:
                yield statement, None


def actions(statement: dict[str, Any]) -> set[str]:
    action = statement["Action"]
    return set(action if isinstance(action, list) else [action])


@pytest.mark.parametrize("function", FUNCTIONS)
def test_a_function_is_granted_exactly_the_calls_its_code_makes(function: str) -> None:
    # Given a function of the template, and the AWS calls its code can make
    properties = FUNCTIONS[function]
    needed = actions_of(properties["Handler"])
    if function == "WorkerFunction":  # it runs the tools of the configured toolkits
        needed |= actions_of_toolkits(TOOLKITS)
    # When its policies are read
    granted = {a for s, _ in statements(properties.get("Policies", [])) for a in actions(s)}
    # Then they grant those calls, and nothing else
    assert granted == needed, (function, granted ^ needed)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_grant_names_its_resources_and_allows_only(function: str) -> None:
    for statement, _ in statements(FUNCTIONS[function].get("Policies", [])):
        assert statement["Effect"] == "Allow"
        assert statement["Resource"] not in ("*", ["*"]), statement
        if any(a.startswith("dynamodb:") for a in actions(statement)):
            table, indexes = statement["Resource"]
            assert table == {"Fn::GetAtt": ["Table", "Arn"]}
            assert indexes == {"Fn::Sub": "${Table.Arn}/index/*"}


@pytest.mark.parametrize("function", FUNCTIONS)
def test_dispatch_permissions_follow_the_dispatch_parameter(function: str) -> None:
    # Sending hops to the step queue, and invoking the worker, are granted only in the mode
    # that uses them (the run-requests DLQ, where the starter parks requests, is not a hop).
    for statement, condition in statements(FUNCTIONS[function].get("Policies", [])):
        for action in actions(statement) & DISPATCH.keys():
            if statement["Resource"] == WEBSOCKET_SELF and function == "WebSocketFunction":
                assert condition is None, (function, statement)
            elif statement["Resource"] == STEP_QUEUE or action == "lambda:InvokeFunction":
                assert condition == DISPATCH[action], (function, statement)
            else:
                assert condition is None and action == "sqs:SendMessage", (function, statement)


def test_the_scan_sees_the_calls_it_is_meant_to_see() -> None:
    # The scan itself: the WebSocket function stores connections, posts replies and invokes
    # itself (a replay), but never sends hops; the worker does both; the authorizer calls no
    # AWS API at all.
    websocket = actions_of("functions.websocket.handler.handler")
    assert {"dynamodb:Query", "execute-api:ManageConnections"} <= websocket
    assert websocket & DISPATCH.keys() == {"lambda:InvokeFunction"}
    assert DISPATCH.keys() <= actions_of("functions.worker.handler.handler")
    assert actions_of("functions.auth.authorizer.handler") == set()
    # the model nodes' toolkit calls Bedrock (Converse, ConverseStream), and reads the
    # OpenAI-compatible endpoint's key from SSM, and nothing else
    assert actions_of_toolkits(["functions.models.toolkit"]) == BEDROCK | {"ssm:GetParameter"}


def test_bedrock_is_granted_only_on_the_named_models() -> None:
    worker = FUNCTIONS["WorkerFunction"]
    grants = [(s, c) for s, c in statements(worker["Policies"]) if actions(s) & BEDROCK]
    assert len(grants) == 1
    statement, condition = grants[0]
    assert condition == "CallsBedrock" and actions(statement) == BEDROCK
    assert statement["Resource"]["Fn::Split"][0] == ","
    arns = statement["Resource"]["Fn::Split"][1]["Fn::Sub"]
    assert "foundation-model/${Ids}" in arns[0]
    assert arns[1]["Ids"]["Fn::Join"][1] == {"Ref": "BedrockModelIds"}


def test_the_openai_key_is_readable_only_from_the_named_parameter() -> None:
    # Given the worker's grants of SSM
    worker = FUNCTIONS["WorkerFunction"]
    grants = [(s, c) for s, c in statements(worker["Policies"]) if any(
        a.startswith("ssm:") for a in actions(s))]  # fmt: skip
    # Then there is one, GetParameter alone, when a parameter is named, on its ARN alone
    assert len(grants) == 1
    statement, condition = grants[0]
    assert condition == "ReadsOpenAIKey" and actions(statement) == {"ssm:GetParameter"}
    assert statement["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}"
        ":parameter${OpenAIApiKeyParameter}"
    }
    assert TEMPLATE["Conditions"]["ReadsOpenAIKey"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "OpenAIApiKeyParameter"}, ""]}]
    }
    # And the parameter is a path, so that its ARN is parameter/<path> with no double slash
    pattern = TEMPLATE["Parameters"]["OpenAIApiKeyParameter"]["AllowedPattern"]
    assert re.fullmatch(pattern, "/hopgraph/openai-key") and re.fullmatch(pattern, "")
    assert not re.fullmatch(pattern, "hopgraph/openai-key")
    assert not re.fullmatch(pattern, "/a/*")
