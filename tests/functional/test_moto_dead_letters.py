"""moto marks dead letters as SQS does (infra/moto/dead_letters.py): a message its redrive
policy moved carries ``DeadLetterQueueSourceArn``; a message sent to the dead-letter queue by
hand does not, and the dead-letter consumer fails no run for it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra.moto.dead_letters import dead_letters_marked


@pytest.fixture
def sqs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws(), dead_letters_marked():
        yield boto3.client("sqs", region_name="us-east-1")


@pytest.mark.parametrize("asked", [["All"], ["DeadLetterQueueSourceArn"]])
def test_only_a_message_moved_by_the_redrive_policy_is_marked(sqs: Any, asked: list[str]) -> None:
    # Given a queue whose messages move to a DLQ after one receive
    dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]
    policy = json.dumps({"deadLetterTargetArn": arn["QueueArn"], "maxReceiveCount": 1})
    queue = sqs.create_queue(
        QueueName="steps", Attributes={"RedrivePolicy": policy, "VisibilityTimeout": "0"}
    )["QueueUrl"]
    source = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    # When one message is received past its count, and another is sent to the DLQ by hand
    sqs.send_message(QueueUrl=queue, MessageBody="moved")
    sqs.send_message(QueueUrl=dlq, MessageBody="forged")
    sqs.receive_message(QueueUrl=queue)
    assert "Messages" not in sqs.receive_message(QueueUrl=queue)  # moved on this receive
    # Then only the moved one names its source queue
    got = sqs.receive_message(
        QueueUrl=dlq, MaxNumberOfMessages=10, MessageSystemAttributeNames=asked
    )
    marks = {
        m["Body"]: m.get("Attributes", {}).get("DeadLetterQueueSourceArn") for m in got["Messages"]
    }
    assert marks == {"moved": source["Attributes"]["QueueArn"], "forged": None}
