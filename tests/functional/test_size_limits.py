"""The local stack refuses what AWS refuses: SQS messages over the queue's MaximumMessageSize
(template.yaml's, else SQS's 256 KiB default) and asynchronous invocations over 256 KB."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from engine.ports import Hop
from functions.aws.dispatch import SqsStepQueue, hop_body
from infra.stack.lambda_endpoint import ASYNC_PAYLOAD_LIMIT, LocalLambdaEndpoint
from infra.template.reader import SQS_DEFAULT_MAXIMUM_MESSAGE_SIZE, create_queues, load_template

HOP = Hop("r_1", "g_1", 3, "inc")


def hop_of_size(size: int) -> Hop:
    """A hop whose SQS body is exactly ``size`` bytes (a hop carries no state any more, so
    only a malformed one, with a huge node name, gets there)."""
    padding = size - len(hop_body(replace(HOP, node="")))
    return replace(HOP, node="x" * padding)


@pytest.fixture
def sqs(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    for name, value in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


def test_a_hop_over_the_step_queue_limit_is_refused(sqs: object) -> None:
    # Given the template's step queue, which sets no MaximumMessageSize
    queue = SqsStepQueue(create_queues(sqs, {})["StepQueue"], sqs)
    limit = SQS_DEFAULT_MAXIMUM_MESSAGE_SIZE
    # When a hop of exactly the limit is sent, Then SQS takes it
    queue.dispatch(hop_of_size(limit))
    # When a hop one byte over is sent, Then SQS refuses it, as AWS would
    with pytest.raises(ClientError, match="Message must be shorter than 262144 bytes"):
        queue.dispatch(hop_of_size(limit + 1))


def test_the_template_s_maximum_message_size_is_the_limit(sqs: object) -> None:
    # Given a template whose step queue sets a smaller MaximumMessageSize
    doc = load_template()
    doc["Resources"]["StepQueue"]["Properties"]["MaximumMessageSize"] = 2048
    queue = SqsStepQueue(create_queues(sqs, {}, doc)["StepQueue"], sqs)
    # When hops either side of it are sent, Then only the one over it is refused
    queue.dispatch(hop_of_size(2048))
    with pytest.raises(ClientError, match="shorter than 2048 bytes"):
        queue.dispatch(hop_of_size(2049))


def test_an_async_invocation_over_256_kb_is_refused() -> None:
    # Given the local Invoke endpoint serving a function
    endpoint = LocalLambdaEndpoint(workers=1)
    endpoint.register("hopgraph-worker", lambda event, context: None)
    endpoint.start()
    try:
        client = boto3.client(
            "lambda", endpoint_url=endpoint.url, region_name="us-east-1",
            aws_access_key_id="t", aws_secret_access_key="t",
        )  # fmt: skip
        payload = json.dumps({"pad": "x" * ASYNC_PAYLOAD_LIMIT}).encode()
        # When an event invocation over the limit is made, Then Lambda's error is raised
        with pytest.raises(ClientError) as refused:
            client.invoke(FunctionName="hopgraph-worker", InvocationType="Event", Payload=payload)
        assert refused.value.response["Error"]["Code"] == "RequestTooLargeException"
    finally:
        endpoint.stop()
