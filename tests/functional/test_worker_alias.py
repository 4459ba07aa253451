"""The worker is invoked through its alias, locally as on AWS: the template publishes every
function as `live`, and the deployment's self-invocation names `<worker>:live`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from infra.stack.lambda_endpoint import LocalLambdaEndpoint, register_from_template
from infra.template.reader import create_queues, function_alias


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalLambdaEndpoint]:
    for name, value in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        urls = create_queues(sqs, {})
        served = LocalLambdaEndpoint(workers=1)

        def echo(event: Any, context: Any) -> Any:
            return {"got": event}

        register_from_template(served, "WorkerFunction", "stack-worker", echo,
                               sqs=sqs, queue_urls=urls)  # fmt: skip
        served.start()
        try:
            yield served
        finally:
            served.stop()


def _client(endpoint: LocalLambdaEndpoint) -> Any:
    return boto3.client(
        "lambda", endpoint_url=endpoint.url, region_name="us-east-1",
        aws_access_key_id="t", aws_secret_access_key="t",
    )  # fmt: skip


def test_the_worker_answers_under_its_alias_and_its_name(endpoint: LocalLambdaEndpoint) -> None:
    # Given the template's alias
    alias = function_alias()
    assert alias == "live"
    client = _client(endpoint)
    # When the worker is invoked by its qualified name (as HOPGRAPH_WORKER_FUNCTION names it)
    # and by its bare name, then both reach it
    for name in (f"stack-worker:{alias}", "stack-worker"):
        reply = client.invoke(FunctionName=name, Payload=json.dumps({"n": 1}).encode())
        assert json.loads(reply["Payload"].read()) == {"got": {"n": 1}}, name
    # And another qualifier does not exist
    with pytest.raises(ClientError) as missing:
        client.invoke(FunctionName="stack-worker:other", Payload=b"{}")
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
