"""template.yaml's structure, read through infra.template.reader, and its resources on moto."""

from __future__ import annotations

import json
import re
import tomllib
import typing
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws

from functions.aws.dynamodb_items import LISTED_ATTRIBUTES
from functions.settings import Settings, env_var, read_settings
from infra.template.reader import (
    TEMPLATE_PATH,
    CfnLoader,
    create_queues,
    create_table,
    default_value,
    function_alias,
    function_definitions,
    load_template,
    queue_definitions,
    table_definition,
    table_ttl_attribute,
    websocket_routes,
)

ROOT = TEMPLATE_PATH.parent
WEBSOCKET_ROUTES = ["$connect", "$disconnect", "subscribe", "unsubscribe", "$default"]
WORKER_NAME = {"Fn::Sub": "${AWS::StackName}-worker:live"}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    return dict(template["Resources"])


@pytest.fixture(scope="module")
def global_env(template: dict[str, Any]) -> dict[str, Any]:
    return dict(template["Globals"]["Function"]["Environment"]["Variables"])


def _policies(resources: dict[str, Any], function: str) -> list[Any]:
    return list(resources[function]["Properties"].get("Policies", []))


WORKER_ARN = {
    "Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:"
    "${AWS::StackName}-worker:live"
}


def _grants(resources: dict[str, Any], function: str) -> list[tuple[str, Any, str | None]]:
    """(action, resource, condition or None) of every statement of a function's policies."""
    found = []
    for policy in _policies(resources, function):
        for statement in policy["Statement"]:
            condition = None
            if "Fn::If" in statement:
                condition, statement, _ = statement["Fn::If"]
            action = statement["Action"]
            for one in action if isinstance(action, list) else [action]:
                found.append((one, statement["Resource"], condition))
    return found


# ---------------------------------------------------------------------------- loader


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("!Ref Table", {"Ref": "Table"}),
        ("!Condition IsProd", {"Condition": "IsProd"}),
        ("!Sub 'arn:${AWS::Partition}:x'", {"Fn::Sub": "arn:${AWS::Partition}:x"}),
        ("!Sub ['${A}-x', {A: !Ref B}]", {"Fn::Sub": ["${A}-x", {"A": {"Ref": "B"}}]}),
        ("!GetAtt Queue.Arn", {"Fn::GetAtt": ["Queue", "Arn"]}),
        ("!GetAtt Stack.Outputs.Url", {"Fn::GetAtt": ["Stack", "Outputs.Url"]}),
        ("!GetAtt [Queue, Arn]", {"Fn::GetAtt": ["Queue", "Arn"]}),
        ("!If [C, 1, 2]", {"Fn::If": ["C", 1, 2]}),
        ("!Join ['', [a, !Ref B]]", {"Fn::Join": ["", ["a", {"Ref": "B"}]]}),
        ("!Select [0, !GetAZs '']", {"Fn::Select": [0, {"Fn::GetAZs": ""}]}),
        ("!Split [',', 'a,b']", {"Fn::Split": [",", "a,b"]}),
        ("!Equals [!Ref P, x]", {"Fn::Equals": [{"Ref": "P"}, "x"]}),
        ("!Not [!Condition C]", {"Fn::Not": [{"Condition": "C"}]}),
        (
            "!And [!Condition A, !Condition B]",
            {"Fn::And": [{"Condition": "A"}, {"Condition": "B"}]},
        ),
        ("!Or [!Condition A, !Condition B]", {"Fn::Or": [{"Condition": "A"}, {"Condition": "B"}]}),
        ("!FindInMap [M, K, V]", {"Fn::FindInMap": ["M", "K", "V"]}),
        ("!ImportValue shared-vpc", {"Fn::ImportValue": "shared-vpc"}),
        ("!Base64 hello", {"Fn::Base64": "hello"}),
        ("!Cidr [10.0.0.0/16, 4, 8]", {"Fn::Cidr": ["10.0.0.0/16", 4, 8]}),
    ],
)
def test_loader_reads_short_tags_as_long_forms(source: str, expected: Any) -> None:
    # Given a value written with a CloudFormation short tag
    # When it is loaded
    loaded = yaml.load(f"value: {source}", Loader=CfnLoader)
    # Then it is the long (JSON) form
    assert loaded == {"value": expected}


def test_loader_rejects_unknown_tags() -> None:
    with pytest.raises(yaml.constructor.ConstructorError, match="!Bogus"):
        yaml.load("value: !Bogus x", Loader=CfnLoader)


def test_loader_stays_safe() -> None:
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.load("value: !!python/object/apply:os.system [echo]", Loader=CfnLoader)


def test_template_is_sam(template: dict[str, Any]) -> None:
    # LanguageExtensions first: it resolves the !If of DeletionPolicy before SAM's transform
    assert template["Transform"] == ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"]


# ---------------------------------------------------------------------------- functions


def test_globals_hold_the_shared_function_settings(template: dict[str, Any]) -> None:
    function_globals = template["Globals"]["Function"]
    assert function_globals["Runtime"] == "python3.13"
    assert function_globals["Architectures"] == ["arm64"]
    assert function_globals["Timeout"] == 30
    assert function_globals["MemorySize"] == 256
    assert function_globals["Tracing"] == "Active"


def test_functions_and_handlers() -> None:
    handlers = {name: f["handler"] for name, f in function_definitions().items()}
    assert handlers == {
        "ApiFunction": "functions.api.handler.handler",
        "WorkerFunction": "functions.worker.handler.handler",
        "StarterFunction": "functions.starter.handler.handler",
        "WebSocketFunction": "functions.websocket.handler.handler",
        "DeadLetterFunction": "functions.deadletter.handler.handler",
        "SweeperFunction": "functions.sweeper.handler.handler",
        "WebSocketAuthorizerFunction": "functions.auth.authorizer.handler",
    }


def test_every_sqs_event_source_reports_partial_failures_and_its_queue_has_a_dlq() -> None:
    queues = queue_definitions()
    sources = [
        (name, source)
        for name, function in function_definitions().items()
        for source in function["sqs_event_sources"]
    ]
    assert {name for name, _ in sources} == {
        "WorkerFunction",
        "StarterFunction",
        "DeadLetterFunction",
    }
    dlqs = {q["dlq"] for q in queues.values()}
    for name, source in sources:
        assert source["report_batch_item_failures"], name
        queue = queues[source["queue"]]
        if source["queue"] in dlqs:
            # The end of the line: a DLQ is never itself redriven (its consumer logs and
            # acknowledges what it cannot read).
            assert queue["dlq"] is None, source["queue"]
            continue
        assert queue["dlq"] in queues, source["queue"]
        assert queue["max_receive_count"] is not None
        assert 1 <= queue["max_receive_count"] <= 10
        assert queues[queue["dlq"]]["dlq"] is None


def test_the_step_dlq_is_consumed_by_the_dead_letter_function(resources: dict[str, Any]) -> None:
    # Given the queue both carriers dead-letter hops into
    worker = resources["WorkerFunction"]["Properties"]
    step_dlq = queue_definitions()["StepQueue"]["dlq"]
    assert worker["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": [step_dlq, "Arn"]
    }
    # Then the dead-letter function consumes it, and the run-requests DLQ too (it keeps
    # parked requests for a redrive), and may only read and write the table
    consumer = function_definitions()["DeadLetterFunction"]
    requests_dlq = queue_definitions()["RunRequestsQueue"]["dlq"]
    assert consumer["sqs_event_sources"] == [
        {"queue": step_dlq, "batch_size": 10, "report_batch_item_failures": True},
        {"queue": requests_dlq, "batch_size": 10, "report_batch_item_failures": True},
    ]
    grants = _grants(resources, "DeadLetterFunction")
    assert ("dynamodb:UpdateItem", TABLE_RESOURCES, None) in grants
    # (it may send hops only as its run service's step queue, in the deployment's mode, and
    # a redrive's requests to the run-requests queue)
    assert [g for g in grants if g[0].startswith(("sqs:", "lambda:")) and g[2] is None] == [
        ("sqs:SendMessage", {"Fn::GetAtt": ["RunRequestsQueue", "Arn"]}, None)
    ]


def test_the_worker_allows_its_recursive_loop(resources: dict[str, Any]) -> None:
    # The worker re-triggers itself once per hop; Lambda would stop it after about 16 hops.
    assert resources["WorkerFunction"]["Properties"]["RecursiveLoop"] == "Allow"
    definitions = function_definitions()
    assert definitions["WorkerFunction"]["recursive_loop"] == "Allow"
    # Every other function keeps Lambda's default: none of them re-triggers itself.
    others = {n: d["recursive_loop"] for n, d in definitions.items() if n != "WorkerFunction"}
    assert set(others.values()) == {"Terminate"}


def test_visibility_timeout_is_at_least_six_times_the_consumer_timeout() -> None:
    queues = queue_definitions()
    for name, function in function_definitions().items():
        for source in function["sqs_event_sources"]:
            visibility = int(queues[source["queue"]]["attributes"]["VisibilityTimeout"])
            assert visibility >= 6 * function["timeout"], (name, source["queue"])


def test_dead_letter_queues_keep_messages_fourteen_days() -> None:
    queues = queue_definitions()
    dlqs = {q["dlq"] for q in queues.values() if q["dlq"] is not None}
    assert dlqs == {"StepDLQ", "RunRequestsDLQ"}
    for dlq in dlqs:
        assert queues[dlq]["attributes"]["MessageRetentionPeriod"] == str(14 * 24 * 3600)


def test_worker_is_named_for_self_invocation(
    resources: dict[str, Any], global_env: dict[str, Any]
) -> None:
    worker = resources["WorkerFunction"]["Properties"]
    # Given the worker's name is derived from the stack name, not !Ref WorkerFunction, and
    # self-invocation names its alias, which the triggers invoke too
    assert worker["FunctionName"] == {"Fn::Sub": "${AWS::StackName}-worker"}
    assert global_env["HOPGRAPH_WORKER_FUNCTION"] == WORKER_NAME
    assert function_alias() == "live"
    # Then every function that dispatches may invoke it under that name, in that mode
    for function in ("ApiFunction", "WorkerFunction", "StarterFunction"):
        grant = ("lambda:InvokeFunction", WORKER_ARN, "DispatchByLambda")
        assert grant in _grants(resources, function), function
    # And failed asynchronous hops end in the step DLQ after two retries
    invoke = worker["EventInvokeConfig"]
    assert invoke["MaximumRetryAttempts"] == 2
    assert invoke["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": {"Fn::GetAtt": ["StepDLQ", "Arn"]},
    }
    assert function_definitions()["WorkerFunction"]["sqs_event_sources"] == [
        {"queue": "StepQueue", "batch_size": 10, "report_batch_item_failures": True}
    ]


TABLE_RESOURCES = [{"Fn::GetAtt": ["Table", "Arn"]}, {"Fn::Sub": "${Table.Arn}/index/*"}]


def test_policies_are_statements_scoped_to_this_stack(resources: dict[str, Any]) -> None:
    for function in function_definitions():
        for policy in _policies(resources, function):
            # No managed policy names, no SAM policy templates (DynamoDBCrudPolicy grants
            # Scan and DeleteItem on the whole table): statements, each on named resources.
            assert isinstance(policy, dict) and set(policy) == {"Statement"}, (function, policy)
        for action, resource, _ in _grants(resources, function):
            assert "*" not in action and resource != "*", (function, action)
        if function != "WebSocketAuthorizerFunction":  # it reads no table: only tokens
            assert ("dynamodb:Query", TABLE_RESOURCES, None) in _grants(resources, function)


def test_starter_may_park_bad_requests_in_its_dlq(resources: dict[str, Any]) -> None:
    grant = ("sqs:SendMessage", {"Fn::GetAtt": ["RunRequestsDLQ", "Arn"]}, None)
    assert grant in _grants(resources, "StarterFunction")


@pytest.mark.parametrize(
    "function",
    ["ApiFunction", "WorkerFunction", "StarterFunction", "WebSocketFunction", "DeadLetterFunction"],
)
def test_notifying_functions_may_post_to_connections(
    resources: dict[str, Any], function: str
) -> None:
    statements = [
        statement
        for policy in _policies(resources, function)
        for statement in policy.get("Statement", [])
    ]
    assert {
        "Effect": "Allow",
        "Action": "execute-api:ManageConnections",
        "Resource": {
            "Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}"
            ":${WebSocketApi}/*"
        },
    } in statements


def test_http_api_routes_everything_to_the_api_function() -> None:
    functions = function_definitions()
    assert functions["ApiFunction"]["http_routes"] == [
        "ANY /{proxy+}",
        "GET /",
        "GET /health",
        "GET /openapi.json",
        "GET /docs",
        "GET /redoc",
        "GET /docs/assets/{file}",
        "GET /ui",
        "GET /ui/assets/{file}",
    ]
    assert all(not f["http_routes"] for n, f in functions.items() if n != "ApiFunction")


# ---------------------------------------------------------------------------- WebSocket


def test_websocket_routes_are_exactly_the_protocol_routes() -> None:
    assert websocket_routes() == WEBSOCKET_ROUTES
    served = {name: f["websocket_routes"] for name, f in function_definitions().items()}
    assert served == {
        "ApiFunction": [],
        "WorkerFunction": [],
        "StarterFunction": [],
        "WebSocketFunction": WEBSOCKET_ROUTES,
        "DeadLetterFunction": [],
        "SweeperFunction": [],
        "WebSocketAuthorizerFunction": [],
    }


def test_websocket_stage_deploys_every_change_after_its_routes(resources: dict[str, Any]) -> None:
    api = resources["WebSocketApi"]["Properties"]
    assert api["ProtocolType"] == "WEBSOCKET"
    assert api["RouteSelectionExpression"] == "$request.body.action"
    # Given the stage: created after every route, then deploying itself on each change of a
    # route, integration or authorizer (no Deployment of fixed logical id, made only once)
    routes = {n for n, r in resources.items() if r["Type"] == "AWS::ApiGatewayV2::Route"}
    stage = resources["WebSocketStage"]
    assert set(stage["DependsOn"]) == routes
    assert stage["Properties"]["AutoDeploy"] is True
    assert "DeploymentId" not in stage["Properties"]
    assert not [n for n, r in resources.items() if r["Type"] == "AWS::ApiGatewayV2::Deployment"]
    # And API Gateway invokes the functions' alias, never $LATEST
    permission = resources["WebSocketPermission"]["Properties"]
    assert permission["FunctionName"] == {"Ref": "WebSocketFunctionAliaslive"}
    assert permission["Principal"] == "apigateway.amazonaws.com"
    authorizer = resources["WebSocketAuthorizerPermission"]["Properties"]
    assert authorizer["FunctionName"] == {"Ref": "WebSocketAuthorizerFunctionAliaslive"}
    for name, target in (
        ("WebSocketIntegration", "IntegrationUri"),
        ("WebSocketAuthorizer", "AuthorizerUri"),
    ):
        uri = resources[name]["Properties"][target]["Fn::Sub"]
        assert "Aliaslive}/invocations" in uri, name


# ---------------------------------------------------------------------------- environment


def _scalar(value: Any) -> Any:
    """A number a parameter or a mapping gives, as the environment string it becomes."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _placeholder(value: Any) -> str:
    """A template value as a Lambda would see it; intrinsics become a stand-in string."""
    return value if isinstance(value, str) else "resolved-at-deploy"


def test_every_function_gets_the_shared_environment(global_env: dict[str, Any]) -> None:
    for name, function in function_definitions().items():
        assert function["environment"].keys() >= global_env.keys(), name


def test_environment_and_settings_agree_both_ways(global_env: dict[str, Any]) -> None:
    set_anywhere = {
        variable for f in function_definitions().values() for variable in f["environment"]
    }
    fields = {env_var(field) for field in Settings.model_fields}
    # Every variable the template sets is a Settings field (or Powertools' own)
    assert {v for v in set_anywhere if not v.startswith("POWERTOOLS_")} <= fields
    # and every Settings field is set, for every function, through Globals
    assert fields <= global_env.keys()
    assert {
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
        "POWERTOOLS_LOG_LEVEL",
    } <= global_env.keys()


def test_environment_values_pass_settings_validation(
    template: dict[str, Any], global_env: dict[str, Any]
) -> None:
    # Given the template's literal values, and parameter defaults where it refers to one
    parameters = template["Parameters"]
    environ = {
        name: str(parameters[value["Ref"]]["Default"])
        if isinstance(value, dict) and value.get("Ref") in parameters
        else _placeholder(_scalar(default_value(template, value)))
        for name, value in global_env.items()
    }
    # When the handlers' settings read them
    settings = read_settings(environ)
    # Then they validate, with the values the template means
    assert settings.dispatch == "sqs"
    assert settings.toolkit_modules == [
        "engine.toolkits.code_review",
        "engine.toolkits.basics",
        "engine.toolkits.research",
        "functions.models.toolkit",
    ]
    assert settings.lease_seconds == 2 * parameters["WorkerTimeout"]["Default"]
    assert (settings.state_limit_bytes, settings.max_steps) == (8 * 1024 * 1024, 100)
    assert settings.bucket and settings.effective_state_limit == 8 * 1024 * 1024
    assert settings.connection_ttl_seconds == 7_200


def test_dispatch_parameter_allows_what_settings_allows(template: dict[str, Any]) -> None:
    dispatch = template["Parameters"]["Dispatch"]
    allowed = typing.get_args(Settings.model_fields["dispatch"].annotation)
    assert sorted(dispatch["AllowedValues"]) == sorted(allowed)
    assert dispatch["Default"] == Settings.model_fields["dispatch"].default


def test_step_max_receives_equals_the_step_queue_max_receive_count(
    global_env: dict[str, Any],
) -> None:
    step_queue = queue_definitions()["StepQueue"]
    assert int(global_env["HOPGRAPH_STEP_MAX_RECEIVES"]) == step_queue["max_receive_count"]


def test_environment_points_at_this_stack(global_env: dict[str, Any]) -> None:
    assert global_env["HOPGRAPH_TABLE"] == {"Ref": "Table"}
    assert global_env["HOPGRAPH_STEP_QUEUE_URL"] == {"Ref": "StepQueue"}
    assert global_env["HOPGRAPH_RUN_REQUESTS_DLQ_URL"] == {"Ref": "RunRequestsDLQ"}
    assert global_env["HOPGRAPH_DISPATCH"] == {"Ref": "Dispatch"}
    endpoint = global_env["HOPGRAPH_WS_ENDPOINT"]["Fn::Sub"]
    assert endpoint.startswith("https://${WebSocketApi}.execute-api.")
    assert endpoint.endswith("/${WebSocketStageName}")


# ---------------------------------------------------------------------------- table


def test_table_keys_and_indexes(template: dict[str, Any]) -> None:
    definition = table_definition(template)
    assert definition["BillingMode"] == "PAY_PER_REQUEST"
    assert definition["KeySchema"] == [
        {"AttributeName": "PK", "KeyType": "HASH"},
        {"AttributeName": "SK", "KeyType": "RANGE"},
    ]
    indexes = {i["IndexName"]: i for i in definition["GlobalSecondaryIndexes"]}
    assert sorted(indexes) == ["GSI1", "GSI2", "GSI3"]
    for name, index in indexes.items():
        assert index["KeySchema"] == [
            {"AttributeName": f"{name}PK", "KeyType": "HASH"},
            {"AttributeName": f"{name}SK", "KeyType": "RANGE"},
        ]
        # Only what listings show is copied (never a run's input or a graph's definition)
        assert index["Projection"] == {
            "ProjectionType": "INCLUDE",
            "NonKeyAttributes": list(LISTED_ATTRIBUTES),
        }
    assert {a["AttributeName"]: a["AttributeType"] for a in definition["AttributeDefinitions"]} == {
        key: "S" for key in ("PK", "SK", "GSI1PK", "GSI1SK", "GSI2PK", "GSI2SK", "GSI3PK", "GSI3SK")
    }
    assert "TableName" not in definition
    assert table_ttl_attribute(template) == "expires_at"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> typing.Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield


@pytest.mark.usefixtures("aws")
def test_table_definition_creates_a_working_table() -> None:
    # Given the table created from the template
    client = boto3.client("dynamodb", region_name="us-east-1")
    client.create_table(TableName="direct", **table_definition())
    create_table(client, "hopgraph-test")
    # When a run item is written with both index keys
    client.put_item(
        TableName="hopgraph-test",
        Item={
            "PK": {"S": "RUN#r1"},
            "SK": {"S": "RUN"},
            "GSI1PK": {"S": "GRAPH#g1"},
            "GSI1SK": {"S": "RUN#2024-01-01T00:00:00Z#r1"},
            "GSI2PK": {"S": "STATUS#running"},
            "GSI2SK": {"S": "2024-01-01T00:00:00Z#r1"},
        },
    )
    # Then it is found by key, by graph and by status, and the TTL is on
    assert "Item" in client.get_item(
        TableName="hopgraph-test", Key={"PK": {"S": "RUN#r1"}, "SK": {"S": "RUN"}}
    )
    for index, key in (("GSI1", "GRAPH#g1"), ("GSI2", "STATUS#running")):
        found = client.query(
            TableName="hopgraph-test",
            IndexName=index,
            KeyConditionExpression=f"{index}PK = :pk",
            ExpressionAttributeValues={":pk": {"S": key}},
        )
        assert found["Count"] == 1, index
    ttl = client.describe_time_to_live(TableName="hopgraph-test")["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires_at")


@pytest.mark.usefixtures("aws")
def test_queue_definitions_create_working_queues_with_redrive() -> None:
    # Given the queues created from the template
    sqs = boto3.client("sqs", region_name="us-east-1")
    urls = create_queues(sqs, {"StepQueue": "hopgraph-steps"})
    assert set(urls) == set(queue_definitions())
    assert urls["StepQueue"].endswith("/hopgraph-steps")
    attributes = sqs.get_queue_attributes(QueueUrl=urls["StepQueue"], AttributeNames=["All"])[
        "Attributes"
    ]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=urls["StepDLQ"], AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    assert attributes["VisibilityTimeout"] == "720"  # 6x WorkerTimeout's default
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": 5,
    }
    # When a poison hop is received maxReceiveCount times and never deleted
    sqs.send_message(QueueUrl=urls["StepQueue"], MessageBody='{"run_id": "r1"}')
    receives = 0
    while sqs.receive_message(QueueUrl=urls["StepQueue"], VisibilityTimeout=0).get("Messages"):
        receives += 1
        assert receives <= 5
    # Then it has moved to the DLQ
    assert receives == 5
    parked = sqs.receive_message(QueueUrl=urls["StepDLQ"])["Messages"]
    assert [m["Body"] for m in parked] == ['{"run_id": "r1"}']


# ---------------------------------------------------------------------------- packaging


def _makefile_targets() -> set[str]:
    targets: set[str] = set()
    for line in (ROOT / "Makefile").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9_.%/$() -]+?)\s*:(?![=:])", line)
        if match:
            targets.update(match.group(1).split())
    return targets


def test_every_makefile_built_resource_has_a_build_target(resources: dict[str, Any]) -> None:
    built = {
        name
        for name, resource in resources.items()
        if (resource.get("Metadata") or {}).get("BuildMethod") == "makefile"
    }
    serverless = {
        name
        for name, resource in resources.items()
        if resource["Type"] in ("AWS::Serverless::Function", "AWS::Serverless::LayerVersion")
    }
    assert built == serverless
    assert {f"build-{name}" for name in built} <= _makefile_targets()


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\[<>=!~;\s]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_lambda_dependencies_follow_pyproject(resources: dict[str, Any]) -> None:
    layer_dir = ROOT / resources["DepsLayer"]["Properties"]["ContentUri"]
    lines = (layer_dir / "requirements.in").read_text(encoding="utf-8").splitlines()
    lambda_deps = {
        _requirement_name(line) for line in lines if line.strip() and not line.startswith("#")
    }
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    project_deps = {_requirement_name(r) for r in pyproject["project"]["dependencies"]}
    assert lambda_deps <= project_deps
    assert not lambda_deps & {"boto3", "botocore"}  # the Lambda runtime provides them
    assert {"aws-lambda-powertools", "pydantic"} <= lambda_deps


def test_outputs(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert set(outputs) == {
        "HttpApiUrl",
        "WebSocketUrl",
        "TableName",
        "StepQueueUrl",
        "RunRequestsQueueUrl",
        "TokenIssuer",
        "AlarmTopicArn",
        "DashboardUrl",
        "UserPoolId",
        "UserPoolClientId",
    }
    assert outputs["WebSocketUrl"]["Value"]["Fn::Sub"].startswith("wss://")


def test_load_template_accepts_a_path(tmp_path: Path) -> None:
    copy = tmp_path / "t.yaml"
    copy.write_text(TEMPLATE_PATH.read_text(encoding="utf-8"), encoding="utf-8")
    assert load_template(copy) == load_template()
    (tmp_path / "bad.yaml").write_text("just: text\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not a CloudFormation template"):
        load_template(tmp_path / "bad.yaml")


def test_every_makefile_build_runs_make_in_the_repo_root() -> None:
    # `sam build` runs each build-<LogicalId> target; without WorkingDirectory it runs make in
    # a scratch folder where functions/ and engine/ do not exist
    resources = load_template()["Resources"]
    built = {
        name: resource.get("Metadata", {})
        for name, resource in resources.items()
        if resource.get("Metadata", {}).get("BuildMethod") == "makefile"
    }
    assert "SweeperFunction" in built
    assert {n: m.get("WorkingDirectory") for n, m in built.items()} == dict.fromkeys(built, ".")
