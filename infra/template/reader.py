"""template.yaml as data: the table, queues, functions and routes the local stack and tests build.

template.yaml is the single source of truth for keys, indexes, queues and routes. Everything
outside the cloud that needs them (the local stack on moto, the tests) reads them from here
instead of repeating the schema.

The loader is a small ``yaml.SafeLoader`` subclass rather than cfn-lint's decoder: that one
would drag the whole linter (and its pinned dependencies) into the runtime of the local stack,
while the CloudFormation short tags only need turning into their long, JSON forms.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypedDict, cast

import yaml

__all__ = [
    "TEMPLATE_PATH",
    "CfnLoader",
    "FunctionDefinition",
    "QueueDefinition",
    "SqsEventSource",
    "bucket_ids",
    "create_buckets",
    "create_queues",
    "create_table",
    "function_alias",
    "function_definitions",
    "load_template",
    "open_http_routes",
    "queue_definitions",
    "table_definition",
    "table_ttl_attribute",
    "websocket_routes",
]

TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "template.yaml"
if not TEMPLATE_PATH.exists():  # an installed hopgraph: the copy shipped as package data
    TEMPLATE_PATH = Path(__file__).resolve().parents[1] / "project" / "data" / "template.yaml"

Template = Mapping[str, Any]

# Short tag -> long form. `!GetAtt` and `!Ref`/`!Condition` are special-cased below.
_SHORT_TAGS: dict[str, str] = {
    "Ref": "Ref",
    "Condition": "Condition",
    **{
        name: f"Fn::{name}"
        for name in (
            "Sub",
            "GetAtt",
            "If",
            "Join",
            "Select",
            "Split",
            "Equals",
            "Not",
            "And",
            "Or",
            "FindInMap",
            "ImportValue",
            "Base64",
            "Cidr",
            "GetAZs",
        )
    },
}


class CfnLoader(yaml.SafeLoader):
    """A safe YAML loader that reads CloudFormation short tags as their long forms.

    ``!Ref Table`` becomes ``{"Ref": "Table"}``, ``!Sub "x-${A}"`` becomes
    ``{"Fn::Sub": "x-${A}"}`` and ``!GetAtt Queue.Arn`` becomes
    ``{"Fn::GetAtt": ["Queue", "Arn"]}``, exactly as in a JSON template.
    """


def _construct_short_tag(loader: CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    key = _SHORT_TAGS.get(suffix)
    if key is None:
        raise yaml.constructor.ConstructorError(
            None, None, f"unknown CloudFormation tag !{suffix}", node.start_mark
        )
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            # `!GetAtt Res.Attr.Sub` names attribute `Attr.Sub` of `Res`.
            resource, _, attribute = str(value).partition(".")
            value = [resource, attribute]
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(cast(yaml.MappingNode, node), deep=True)
    return {key: value}


CfnLoader.add_multi_constructor("!", _construct_short_tag)


class _FastCfnLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """:class:`CfnLoader` on libyaml's parser when PyYAML has it (about 15 times faster on
    template.yaml: the tests and the local stack read it often); the same constructors."""


_FastCfnLoader.add_multi_constructor("!", _construct_short_tag)

_parsed: dict[tuple[str, int, int], bytes] = {}
"""template.yaml parsed, by (path, mtime, size), pickled: each caller gets a copy of its own."""


def load_template(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Parse a CloudFormation/SAM template (default: the repo's template.yaml).

    A file already parsed and unchanged since (same modification time and size) is not parsed
    again: the caller gets a fresh copy of the earlier result, which it may change freely."""
    source = Path(TEMPLATE_PATH if path is None else path)
    stat = source.stat()
    key = (str(source.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _parsed:
        with source.open(encoding="utf-8") as stream:
            loaded = yaml.load(stream, Loader=_FastCfnLoader)  # a SafeLoader, in C
        if not isinstance(loaded, dict) or "Resources" not in loaded:
            raise ValueError(f"{path or TEMPLATE_PATH} is not a CloudFormation template")
        _parsed[key] = pickle.dumps(loaded)
    return cast(dict[str, Any], pickle.loads(_parsed[key]))  # bytes this module wrote


# ---------------------------------------------------------------------------- helpers


def _template(template: Template | None) -> Template:
    return load_template() if template is None else template


def _resources(template: Template, resource_type: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") == resource_type:
            yield logical_id, resource.get("Properties") or {}


_SUB_NAME = re.compile(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z0-9.]+)?\}")


def _referenced_ids(value: Any) -> set[str]:
    """Logical ids and parameters an intrinsic-function value refers to (Ref, GetAtt, Sub)."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= _referenced_ids(item)
    elif isinstance(value, dict):
        for key, arg in value.items():
            if key == "Ref" and isinstance(arg, str):
                found.add(arg)
            elif key == "Fn::GetAtt":
                found.add(str(arg[0] if isinstance(arg, list) else arg.split(".", 1)[0]))
            elif key == "Fn::Sub":
                text, variables = (arg[0], arg[1]) if isinstance(arg, list) else (arg, {})
                found |= {n for n in _SUB_NAME.findall(text) if n not in variables}
                found |= _referenced_ids(variables)
            else:
                found |= _referenced_ids(arg)
    return found


def _single_ref(value: Any, what: str) -> str:
    refs = _referenced_ids(value)
    if len(refs) != 1:
        raise ValueError(f"{what}: expected a reference to one resource, got {value!r}")
    return refs.pop()


# ---------------------------------------------------------------------------- table


def _table(template: Template) -> dict[str, Any]:
    tables = dict(_resources(template, "AWS::DynamoDB::Table"))
    if len(tables) != 1:
        raise ValueError(f"expected exactly one DynamoDB table, found {sorted(tables)}")
    return next(iter(tables.values()))


def table_definition(template: Template | None = None) -> dict[str, Any]:
    """``dynamodb.create_table(TableName=..., **table_definition())`` keyword arguments.

    KeySchema, AttributeDefinitions, GlobalSecondaryIndexes and BillingMode as the template
    declares them; the TTL attribute is :func:`table_ttl_attribute` (TTL is a separate call).
    """
    props = _table(_template(template))
    kwargs: dict[str, Any] = {
        "KeySchema": [dict(k) for k in props["KeySchema"]],
        "AttributeDefinitions": [dict(a) for a in props["AttributeDefinitions"]],
        "BillingMode": props.get("BillingMode", "PROVISIONED"),
    }
    indexes = [
        {
            "IndexName": gsi["IndexName"],
            "KeySchema": [dict(k) for k in gsi["KeySchema"]],
            "Projection": dict(gsi["Projection"]),
        }
        for gsi in props.get("GlobalSecondaryIndexes", [])
    ]
    if indexes:
        kwargs["GlobalSecondaryIndexes"] = indexes
    return kwargs


def table_ttl_attribute(template: Template | None = None) -> str | None:
    """The attribute DynamoDB expires items by (None if TTL is not enabled)."""
    ttl = _table(_template(template)).get("TimeToLiveSpecification") or {}
    return str(ttl["AttributeName"]) if ttl.get("Enabled") else None


def create_table(dynamodb: Any, table_name: str, template: Template | None = None) -> None:
    """Create the table on a boto3 DynamoDB client (moto, DynamoDB Local) and enable its TTL."""
    template = _template(template)
    dynamodb.create_table(TableName=table_name, **table_definition(template))
    ttl = table_ttl_attribute(template)
    if ttl is not None:
        dynamodb.update_time_to_live(
            TableName=table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl},
        )


# ---------------------------------------------------------------------------- buckets


def bucket_ids(template: Template | None = None) -> list[str]:
    """The logical ids of the template's S3 buckets."""
    return sorted(
        logical_id for logical_id, _ in _resources(_template(template), "AWS::S3::Bucket")
    )


def create_buckets(
    s3: Any, names: Mapping[str, str], template: Template | None = None
) -> dict[str, str]:
    """Create every bucket of the template that does not exist yet, named by ``names``
    (logical id -> name; by logical id, lower-cased, otherwise). Returns the names by logical
    id. Encryption, public access and lifecycle are AWS's to enforce: moto keeps objects until
    they are deleted."""
    created: dict[str, str] = {}
    for logical_id in bucket_ids(template):
        name = names.get(logical_id, logical_id.lower())
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=name)
        created[logical_id] = name
    return created


# ---------------------------------------------------------------------------- queues


class QueueDefinition(TypedDict):
    """One SQS queue: ``create_queue`` attributes, and its dead-letter queue if it has one."""

    attributes: dict[str, str]
    dlq: str | None
    max_receive_count: int | None


# CloudFormation properties that are also SQS queue attributes of the same name.
_QUEUE_ATTRIBUTES = frozenset(
    {
        "ContentBasedDeduplication",
        "DelaySeconds",
        "FifoQueue",
        "KmsDataKeyReusePeriodSeconds",
        "KmsMasterKeyId",
        "MaximumMessageSize",
        "MessageRetentionPeriod",
        "ReceiveMessageWaitTimeSeconds",
        "SqsManagedSseEnabled",
        "VisibilityTimeout",
    }
)


SQS_DEFAULT_MAXIMUM_MESSAGE_SIZE = 262_144
"""SQS's MaximumMessageSize where a queue does not set it (256 KiB, in the accounts that keep
the older default; moto's default is 1 MiB). The local stack creates queues with it, so a
message SQS would refuse is refused locally too (moto checks the body against it)."""


def default_value(template: Template, value: Any) -> Any:
    """``value`` as a stack deployed with every parameter at its default sees it: a ``Ref``
    to a parameter and a ``FindInMap`` resolved (``WorkerTimeout`` and what follows it);
    any other value as written."""
    if isinstance(value, Mapping) and len(value) == 1:
        ((key, arg),) = value.items()
        parameters = template.get("Parameters") or {}
        if key == "Ref" and isinstance(arg, str) and arg in parameters:
            return parameters[arg].get("Default")
        if key == "Fn::FindInMap" and isinstance(arg, list) and len(arg) == 3:
            mapping, top, second = (default_value(template, a) for a in arg)
            return template["Mappings"][str(mapping)][str(top)][str(second)]
    return value


def _attribute_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def queue_definitions(template: Template | None = None) -> dict[str, QueueDefinition]:
    """Every SQS queue by logical id, in template order."""
    queues: dict[str, QueueDefinition] = {}
    template = _template(template)
    for logical_id, props in _resources(template, "AWS::SQS::Queue"):
        redrive = props.get("RedrivePolicy") or {}
        queues[logical_id] = {
            "attributes": {
                "MaximumMessageSize": str(SQS_DEFAULT_MAXIMUM_MESSAGE_SIZE),
                **{
                    name: _attribute_value(default_value(template, value))
                    for name, value in props.items()
                    if name in _QUEUE_ATTRIBUTES
                },
            },
            "dlq": (
                _single_ref(redrive["deadLetterTargetArn"], f"{logical_id} deadLetterTargetArn")
                if redrive
                else None
            ),
            "max_receive_count": int(redrive["maxReceiveCount"]) if redrive else None,
        }
    return queues


def _dead_letter_queues_first(definitions: Mapping[str, QueueDefinition]) -> list[str]:
    """Queue ids ordered so that each comes after its DLQ (a DLQ may have a DLQ of its own)."""

    def depth(logical_id: str) -> int:
        dlq = definitions[logical_id]["dlq"]
        return 0 if dlq is None else 1 + depth(dlq)

    return sorted(definitions, key=depth)


def create_queues(
    sqs: Any, names: Mapping[str, str], template: Template | None = None
) -> dict[str, str]:
    """Create every queue (dead-letter queues first) on a boto3 SQS client.

    ``names`` maps logical id to queue name; queues it leaves out are named by logical id.
    Returns the queue URLs by logical id.
    """
    definitions = queue_definitions(template)
    urls: dict[str, str] = {}
    for logical_id in _dead_letter_queues_first(definitions):
        definition = definitions[logical_id]
        attributes = dict(definition["attributes"])
        dlq = definition["dlq"]
        if dlq is not None:
            dlq_arn = sqs.get_queue_attributes(QueueUrl=urls[dlq], AttributeNames=["QueueArn"])
            attributes["RedrivePolicy"] = json.dumps(
                {
                    "deadLetterTargetArn": dlq_arn["Attributes"]["QueueArn"],
                    "maxReceiveCount": definition["max_receive_count"],
                }
            )
        name = names.get(logical_id, logical_id)
        urls[logical_id] = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return urls


# ---------------------------------------------------------------------------- functions


class SqsEventSource(TypedDict):
    """An SQS event source mapping of a function."""

    queue: str
    batch_size: int
    report_batch_item_failures: bool


class FunctionDefinition(TypedDict):
    """One Lambda function, with Globals merged in.

    ``recursive_loop`` is Lambda's recursive loop detection setting (``Terminate`` unless the
    function declares ``RecursiveLoop: Allow``); ``max_retry_attempts`` and ``on_failure`` (the
    logical id of an SQS OnFailure destination) are its asynchronous invocation settings.
    """

    handler: str
    timeout: int
    memory_size: int
    recursive_loop: str
    max_retry_attempts: int
    on_failure: str | None
    environment: dict[str, Any]
    sqs_event_sources: list[SqsEventSource]
    http_routes: list[str]
    websocket_routes: list[str]


def _sqs_event_sources(events: Mapping[str, Any]) -> list[SqsEventSource]:
    sources: list[SqsEventSource] = []
    for name, event in events.items():
        if event.get("Type") != "SQS":
            continue
        props = event.get("Properties") or {}
        sources.append(
            {
                "queue": _single_ref(props["Queue"], f"event {name} Queue"),
                "batch_size": int(props.get("BatchSize", 10)),
                "report_batch_item_failures": "ReportBatchItemFailures"
                in props.get("FunctionResponseTypes", []),
            }
        )
    return sources


def _http_routes(events: Mapping[str, Any]) -> list[str]:
    routes: list[str] = []
    for event in events.values():
        if event.get("Type") != "HttpApi":
            continue
        props = event.get("Properties") or {}
        if "Path" in props:
            routes.append(f"{str(props.get('Method', 'ANY')).upper()} {props['Path']}")
        else:
            routes.append("$default")
    return routes


def open_http_routes(template: Template | None = None) -> list[str]:
    """Route keys (``GET /health``) of the HTTP API routes that need no token: their event says
    ``Auth: {Authorizer: NONE}``. Every other route has the API's default JWT authorizer."""
    opened: list[str] = []
    for _, props in _resources(_template(template), "AWS::Serverless::Function"):
        for event in (props.get("Events") or {}).values():
            event_props = event.get("Properties") or {}
            authorizer = (event_props.get("Auth") or {}).get("Authorizer")
            if event.get("Type") == "HttpApi" and authorizer == "NONE":
                method = str(event_props.get("Method", "ANY")).upper()
                opened.append(f"{method} {event_props['Path']}")
    return opened


def _websocket_routes_by_function(template: Template) -> dict[str, list[str]]:
    """Route keys of every WebSocket route, grouped by the function its integration invokes."""
    integrations = {
        logical_id: _referenced_ids(props.get("IntegrationUri"))
        for logical_id, props in _resources(template, "AWS::ApiGatewayV2::Integration")
    }
    functions = _function_ids(template)
    served: dict[str, list[str]] = {}
    for _, props in _resources(template, "AWS::ApiGatewayV2::Route"):
        for integration in _referenced_ids(props.get("Target")) & integrations.keys():
            for target in integrations[integration] & functions.keys():
                served.setdefault(functions[target], []).append(str(props["RouteKey"]))
    return served


def _function_ids(template: Template) -> dict[str, str]:
    """Function logical ids by every id that names them: their own, and that of the alias
    SAM generates for ``AutoPublishAlias: live`` (``<Function>Aliaslive``), which an
    integration or a permission refers to so that the alias's version is invoked."""
    globals_ = (template.get("Globals") or {}).get("Function") or {}
    ids: dict[str, str] = {}
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            ids[logical_id] = logical_id
            props = resource.get("Properties") or {}
            alias = props.get("AutoPublishAlias", globals_.get("AutoPublishAlias"))
            if isinstance(alias, str) and resource["Type"] == "AWS::Serverless::Function":
                ids[f"{logical_id}Alias{alias}"] = logical_id
    return ids


def function_alias(template: Template | None = None) -> str | None:
    """The alias every function is published under (Globals' ``AutoPublishAlias``), if any:
    what the triggers and the worker's self-invocation call."""
    globals_ = (_template(template).get("Globals") or {}).get("Function") or {}
    alias = globals_.get("AutoPublishAlias")
    return alias if isinstance(alias, str) else None


LAMBDA_DEFAULT_TIMEOUT = 3
LAMBDA_DEFAULT_MEMORY = 128
LAMBDA_DEFAULT_ASYNC_RETRIES = 2


def _on_failure_queue(invoke_config: Mapping[str, Any], logical_id: str) -> str | None:
    """The SQS queue an asynchronous invocation's failure record goes to, if one is set."""
    on_failure = (invoke_config.get("DestinationConfig") or {}).get("OnFailure") or {}
    if not on_failure:
        return None
    if on_failure.get("Type") != "SQS":
        raise ValueError(f"{logical_id}: only SQS OnFailure destinations are emulated locally")
    return _single_ref(on_failure["Destination"], f"{logical_id} OnFailure Destination")


def function_definitions(template: Template | None = None) -> dict[str, FunctionDefinition]:
    """Every ``AWS::Serverless::Function`` by logical id, in template order."""
    template = _template(template)
    globals_ = (template.get("Globals") or {}).get("Function") or {}
    global_env = (globals_.get("Environment") or {}).get("Variables") or {}
    ws_routes = _websocket_routes_by_function(template)
    definitions: dict[str, FunctionDefinition] = {}
    for logical_id, props in _resources(template, "AWS::Serverless::Function"):
        events = props.get("Events") or {}
        env = (props.get("Environment") or {}).get("Variables") or {}
        invoke_config = props.get("EventInvokeConfig") or {}
        definitions[logical_id] = {
            "handler": str(props.get("Handler", globals_.get("Handler", ""))),
            "timeout": int(
                default_value(
                    template, props.get("Timeout", globals_.get("Timeout", LAMBDA_DEFAULT_TIMEOUT))
                )
            ),
            "memory_size": int(
                props.get("MemorySize", globals_.get("MemorySize", LAMBDA_DEFAULT_MEMORY))
            ),
            "recursive_loop": str(
                props.get("RecursiveLoop", globals_.get("RecursiveLoop", "Terminate"))
            ),
            "max_retry_attempts": int(
                invoke_config.get("MaximumRetryAttempts", LAMBDA_DEFAULT_ASYNC_RETRIES)
            ),
            "on_failure": _on_failure_queue(invoke_config, logical_id),
            "environment": {**global_env, **env},
            "sqs_event_sources": _sqs_event_sources(events),
            "http_routes": _http_routes(events),
            "websocket_routes": ws_routes.get(logical_id, []),
        }
    return definitions


def websocket_routes(template: Template | None = None) -> list[str]:
    """Route keys of the WebSocket API(s), in template order."""
    template = _template(template)
    websocket_apis = {
        logical_id
        for logical_id, props in _resources(template, "AWS::ApiGatewayV2::Api")
        if props.get("ProtocolType") == "WEBSOCKET"
    }
    return [
        str(props["RouteKey"])
        for _, props in _resources(template, "AWS::ApiGatewayV2::Route")
        if _referenced_ids(props.get("ApiId")) & websocket_apis
    ]
