"""template.yaml ready for production: alarms, logs, dashboard, safe deploys, runtime, guard
rails and data that survives mistakes (README "Operating hopgraph")."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from infra.template.reader import TEMPLATE_PATH, function_definitions, load_template

ROOT = TEMPLATE_PATH.parent
FUNCTIONS = [
    "ApiFunction",
    "WorkerFunction",
    "StarterFunction",
    "DeadLetterFunction",
    "WebSocketFunction",
    "WebSocketAuthorizerFunction",
]
HTTP_API_INTEGRATION_TIMEOUT = 30
"""API Gateway's HTTP API gives up on an integration after 30 s (its maximum)."""


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    return dict(template["Resources"])


def _props(resources: dict[str, Any], name: str) -> dict[str, Any]:
    return dict(resources[name].get("Properties") or {})


def _alarms(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: resource["Properties"]
        for name, resource in resources.items()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    }


def _metrics_of(alarm: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(namespace, metric, dimensions) of an alarm, single metric or metric math alike."""
    if "MetricName" in alarm:
        dims = {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}
        return [(alarm["Namespace"], alarm["MetricName"], dims)]
    found = []
    for query in alarm["Metrics"]:
        if "MetricStat" in query:
            metric = query["MetricStat"]["Metric"]
            dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
            found.append((metric["Namespace"], metric["MetricName"], dims))
    return found


def _resolve(value: Any, truths: dict[str, bool]) -> Any:
    """``value`` with every ``Fn::If`` decided by ``truths`` (condition name -> truth)."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        condition, then, otherwise = value["Fn::If"]
        return _resolve(then if truths[condition] else otherwise, truths)
    if isinstance(value, dict):
        return {k: _resolve(v, truths) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, truths) for v in value]
    return value


# ---------------------------------------------------------------------------- alarms


def test_every_alarm_notifies_the_alarm_topic_when_it_fires_and_clears(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    alarms = _alarms(resources)
    assert alarms
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
        assert alarm["OKActions"] == [{"Ref": "AlarmTopic"}], name
        assert alarm["TreatMissingData"] == "notBreaching", name
    # And the topic's subscriber is a parameter, subscribed only when given
    assert resources["AlarmTopic"]["Type"] == "AWS::SNS::Topic"
    subscription = resources["AlarmEmailSubscription"]
    assert subscription["Condition"] == "NotifyByEmail"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}
    assert template["Parameters"]["AlarmEmail"]["Default"] == ""
    assert template["Conditions"]["NotifyByEmail"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]
    }


def test_alarms_watch_every_dead_letter_queue_and_the_step_queue_age(
    resources: dict[str, Any],
) -> None:
    watched = {
        (metric, dims.get("QueueName", {}).get("Fn::GetAtt", [None])[0])
        for alarm in _alarms(resources).values()
        for namespace, metric, dims in _metrics_of(alarm)
        if namespace == "AWS/SQS"
    }
    assert ("ApproximateNumberOfMessagesVisible", "StepDLQ") in watched
    assert ("ApproximateNumberOfMessagesVisible", "RunRequestsDLQ") in watched
    assert ("ApproximateAgeOfOldestMessage", "StepQueue") in watched


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_function_has_an_errors_and_a_throttles_alarm(
    resources: dict[str, Any], function: str
) -> None:
    watched = {
        metric
        for alarm in _alarms(resources).values()
        for namespace, metric, dims in _metrics_of(alarm)
        if namespace == "AWS/Lambda" and dims.get("FunctionName") == {"Ref": function}
    }
    assert watched == {"Errors", "Throttles"}


def test_alarms_watch_api_5xx_rate_table_throttles_and_failed_runs(
    resources: dict[str, Any],
) -> None:
    alarms = _alarms(resources)
    # the HTTP API's 5xx as a share of its requests
    api = alarms["Api5xxAlarm"]
    assert [m[:2] for m in _metrics_of(api)] == [("AWS/ApiGateway", "5xx"),
                                                ("AWS/ApiGateway", "Count")]  # fmt: skip
    assert "errors / " in api["Metrics"][0]["Expression"]
    # DynamoDB throttling the table's reads or writes
    table = {m[1] for m in _metrics_of(alarms["TableThrottlesAlarm"])}
    assert table == {"ReadThrottleEvents", "WriteThrottleEvents"}
    # runs failed per minute: the Powertools metric the worker and the dead-letter consumer add
    runs = alarms["RunsFailedAlarm"]
    assert (runs["Namespace"], runs["MetricName"], runs["Period"]) == ("Hopgraph", "RunsFailed", 60)
    assert runs["Threshold"] == {"Ref": "FailedRunsAlarmThreshold"}
    sources = "".join(p.read_text() for p in (ROOT / "functions").rglob("*.py"))
    assert 'count("RunsFailed")' in sources


# ---------------------------------------------------------------------------- logs


def test_every_function_logs_json_to_its_own_group_with_a_retention(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    # Given JSON logs with both levels set, for every function
    logging = template["Globals"]["Function"]["LoggingConfig"]
    assert logging["LogFormat"] == "JSON"
    assert logging["ApplicationLogLevel"] == {"Ref": "LogLevel"}
    assert logging["SystemLogLevel"] == "WARN"
    # (Powertools filters by the same level, or it would log what Lambda drops)
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["POWERTOOLS_LOG_LEVEL"] == {"Ref": "LogLevel"}
    # Then each function names its own log group, which expires its events
    groups = set()
    for function in FUNCTIONS:
        group = _props(resources, function)["LoggingConfig"]["LogGroup"]["Ref"]
        assert resources[group]["Type"] == "AWS::Logs::LogGroup"
        assert _props(resources, group)["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        groups.add(group)
    assert len(groups) == len(FUNCTIONS)
    assert (
        template["Parameters"]["LogRetentionDays"]["Default"]
        in (template["Parameters"]["LogRetentionDays"]["AllowedValues"])
    )


# ---------------------------------------------------------------------------- dashboard


def test_the_dashboard_shows_runs_latency_queues_errors_and_cost_drivers(
    resources: dict[str, Any],
) -> None:
    # Given the dashboard body, its ${...} references replaced as CloudFormation would
    body = _props(resources, "Dashboard")["DashboardBody"]["Fn::Sub"]
    names = set(re.findall(r"\$\{([A-Za-z0-9:]+)(?:\.[A-Za-z]+)?\}", body))
    assert {n for n in names if not n.startswith("AWS::")} <= resources.keys()
    doc = json.loads(re.sub(r"\$\{[^}]+\}", "x", body))
    # Then it is a valid dashboard whose widgets show what an operator looks at
    titles = " | ".join(w["properties"]["title"] for w in doc["widgets"])
    for shown in ("Runs started, completed, failed", "Step latency", "Queue depth",
                  "Oldest message age", "errors", "Cost drivers"):  # fmt: skip
        assert shown in titles
    metrics = {m[1] for w in doc["widgets"] for m in w["properties"]["metrics"]}
    assert {"RunsStarted", "RunsCompleted", "RunsFailed", "StepDuration", "Errors",
            "ApproximateAgeOfOldestMessage", "ConsumedWriteCapacityUnits",
            "IncomingBytes", "NumberOfMessagesSent"} <= metrics  # fmt: skip


# ---------------------------------------------------------------------------- deploys


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_function_deploys_through_its_alias_rolled_back_on_its_alarms(
    template: dict[str, Any], resources: dict[str, Any], function: str
) -> None:
    assert template["Globals"]["Function"]["AutoPublishAlias"] == "live"
    preference = _props(resources, function)["DeploymentPreference"]
    assert preference["Type"] == {"Ref": "DeploymentType"}
    alarms = [a["Ref"] for a in preference["Alarms"]]
    assert f"{function}ErrorsAlarm" in alarms
    assert set(alarms) <= _alarms(resources).keys()
    assert template["Parameters"]["DeploymentType"]["Default"].startswith(("Canary", "Linear"))


def test_the_api_and_the_worker_roll_back_on_what_their_users_see(
    resources: dict[str, Any],
) -> None:
    def alarms(function: str) -> set[str]:
        return {a["Ref"] for a in _props(resources, function)["DeploymentPreference"]["Alarms"]}

    assert "Api5xxAlarm" in alarms("ApiFunction")
    assert "RunsFailedAlarm" in alarms("WorkerFunction")


# ---------------------------------------------------------------------------- runtime


def test_functions_and_layers_run_python_3_13_on_arm64(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    function_globals = template["Globals"]["Function"]
    assert (function_globals["Runtime"], function_globals["Architectures"]) == (
        "python3.13",
        ["arm64"],
    )
    for function in FUNCTIONS:
        assert "Runtime" not in _props(resources, function), function
        assert "Architectures" not in _props(resources, function), function
    for layer in ("DepsLayer", "EngineLayer"):
        props = _props(resources, layer)
        assert props["CompatibleRuntimes"] == ["python3.13"]
        assert props["CompatibleArchitectures"] == ["arm64"]
        assert resources[layer]["Metadata"]["BuildArchitecture"] == "arm64"


def test_the_layer_is_built_and_locked_for_that_runtime() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    target = re.search(r"^LAMBDA_PIP_TARGET := (.+?)(?<!\\)$", makefile, re.M | re.S)
    assert target is not None
    assert "--platform manylinux2014_aarch64" in target.group(1)
    assert "--python-version 3.13" in target.group(1)
    lock = re.search(r"^lock: .+?(?=^\S|\Z)", makefile, re.M | re.S)
    assert lock is not None
    assert "--python-version 3.13" in lock.group(0)
    assert "--python-platform aarch64-manylinux2014" in lock.group(0)


# ---------------------------------------------------------------------------- guard rails


def test_the_worker_is_capped_by_parameters(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    worker = _props(resources, "WorkerFunction")
    # Given the step queue's event source, at most WorkerMaxConcurrency workers at once
    scaling = worker["Events"]["Steps"]["Properties"]["ScalingConfig"]
    assert scaling == {"MaximumConcurrency": {"Ref": "WorkerMaxConcurrency"}}
    bounds = template["Parameters"]["WorkerMaxConcurrency"]
    assert (bounds["MinValue"], bounds["MaxValue"]) == (2, 1000)  # what SQS accepts
    assert 2 <= bounds["Default"] <= 1000
    # And a reserved concurrency when asked for (the only cap of Dispatch=lambda)
    assert worker["ReservedConcurrentExecutions"] == {
        "Fn::If": [
            "ReserveWorkerConcurrency",
            {"Ref": "WorkerReservedConcurrency"},
            {"Ref": "AWS::NoValue"},
        ]
    }


def test_both_api_stages_are_throttled(resources: dict[str, Any]) -> None:
    expected = {
        "ThrottlingRateLimit": {"Ref": "ApiRateLimit"},
        "ThrottlingBurstLimit": {"Ref": "ApiBurstLimit"},
    }
    assert _props(resources, "HttpApi")["DefaultRouteSettings"] == expected
    assert _props(resources, "WebSocketStage")["DefaultRouteSettings"] == expected


def test_the_api_answers_well_before_the_http_api_gives_up() -> None:
    # A request still running when the HTTP API gives up (30 s) is answered 503 while it runs
    # on: the function stops first, with its own logged timeout, with time to spare.
    timeout = function_definitions()["ApiFunction"]["timeout"]
    assert timeout <= HTTP_API_INTEGRATION_TIMEOUT - 10


# ---------------------------------------------------------------------------- data


@pytest.mark.parametrize(("protection", "kept"), [("retain", True), ("throwaway", False)])
def test_the_table_and_user_pool_survive_mistakes_unless_throwaway(
    template: dict[str, Any], resources: dict[str, Any], protection: str, kept: bool
) -> None:
    # Given DataProtection, whose default keeps the data
    assert template["Parameters"]["DataProtection"]["Default"] == "retain"
    assert template["Conditions"]["ProtectData"] == {
        "Fn::Equals": [{"Ref": "DataProtection"}, "retain"]
    }
    truths = {"ProtectData": protection == "retain"}
    policy = "Retain" if kept else "Delete"
    # Then the table and the user pool are kept on delete and on replacement, or not
    for name in ("Table", "UserPool"):
        resource = _resolve(resources[name], truths)
        assert (resource["DeletionPolicy"], resource["UpdateReplacePolicy"]) == (policy, policy)
    # And the table has point-in-time recovery and refuses DeleteTable, or not
    table = _resolve(_props(resources, "Table"), truths)
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": kept}
    assert table["DeletionProtectionEnabled"] is kept
    pool = _resolve(_props(resources, "UserPool"), truths)
    assert pool["DeletionProtection"] == ("ACTIVE" if kept else "INACTIVE")


def test_every_other_stateful_resource_says_what_happens_to_it(resources: dict[str, Any]) -> None:
    for name, resource in resources.items():
        if resource["Type"] in ("AWS::SQS::Queue", "AWS::Logs::LogGroup"):
            assert resource["DeletionPolicy"] == resource["UpdateReplacePolicy"] == "Delete", name


def test_readme_documents_operations() -> None:
    readme = Path(ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Operating hopgraph", 1)
    assert len(section) == 2, "README has no 'Operating hopgraph' section"
    for topic in ("### Alarms", "### Quotas", "### Backups", "### Deploys", "### Costs"):
        assert topic in section[1], topic


def test_deploys_may_expand_the_language_extensions_transform(template: dict[str, Any]) -> None:
    # A template that names AWS::LanguageExtensions deploys only with CAPABILITY_AUTO_EXPAND
    assert "AWS::LanguageExtensions" in template["Transform"]
    config = (ROOT / "samconfig.toml").read_text(encoding="utf-8")
    capabilities = re.search(r'^capabilities = "([^"]+)"', config, re.M)
    assert capabilities is not None
    assert set(capabilities.group(1).split()) >= {"CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"}
