"""The fair-queue emulation over moto (infra/moto/fair_queues.py): SQS's delivery order for a
standard queue whose messages carry ``MessageGroupId`` (tenants), as its guide describes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra.moto.fair_queues import fair_queues


@pytest.fixture
def sqs() -> Iterator[Any]:
    with mock_aws(), fair_queues():
        yield boto3.client("sqs", region_name="us-east-1")


def queue(sqs: Any, name: str = "steps", **attributes: str) -> str:
    return str(sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])


def send(sqs: Any, url: str, tenant: str | None, count: int, **extra: Any) -> None:
    for i in range(count):
        group = {} if tenant is None else {"MessageGroupId": tenant}
        sqs.send_message(QueueUrl=url, MessageBody=f"{tenant}-{i}", **group, **extra)


def take(sqs: Any, url: str, count: int) -> list[str]:
    """The bodies of up to ``count`` messages received and held (not deleted)."""
    bodies: list[str] = []
    while len(bodies) < count:
        reply = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=min(10, count - len(bodies)), VisibilityTimeout=300
        )
        if not reply.get("Messages"):
            break
        bodies += [m["Body"] for m in reply["Messages"]]
    return bodies


def tenants(bodies: list[str]) -> list[str]:
    return [body.rsplit("-", 1)[0] for body in bodies]


def test_with_nothing_in_flight_messages_come_in_sending_order(sqs: Any) -> None:
    url = queue(sqs)
    send(sqs, url, "a", 3)
    send(sqs, url, "b", 2)
    assert take(sqs, url, 5) == ["a-0", "a-1", "a-2", "b-0", "b-1"]


def test_a_quiet_tenants_message_comes_before_a_noisy_tenants_backlog(sqs: Any) -> None:
    # Given tenant a with 40 messages held by consumers and 20 more waiting
    url = queue(sqs)
    send(sqs, url, "a", 60)
    assert tenants(take(sqs, url, 40)) == ["a"] * 40
    # When tenant b sends one message after a's backlog
    send(sqs, url, "b", 1)
    # Then b's comes first, and a's backlog after it, in its own order
    assert take(sqs, url, 5) == ["b-0", "a-40", "a-41", "a-42", "a-43"]


def test_of_two_noisy_tenants_the_one_with_fewer_in_flight_goes_first(sqs: Any) -> None:
    # Given tenants a and b both noisy, a with 45 in flight and b with 35, b with 5 waiting
    url = queue(sqs)
    send(sqs, url, "a", 45)
    take(sqs, url, 45)
    send(sqs, url, "b", 40)
    assert tenants(take(sqs, url, 35)) == ["b"] * 35
    # When a sends three more
    send(sqs, url, "a", 3)
    # Then b (fewer in flight) before a, though a's messages were sent later
    assert tenants(take(sqs, url, 8)) == ["b"] * 5 + ["a"] * 3


def test_a_message_without_a_group_is_a_tenant_of_its_own(sqs: Any) -> None:
    url = queue(sqs)
    send(sqs, url, "a", 40)
    take(sqs, url, 35)
    send(sqs, url, None, 1)
    assert take(sqs, url, 2) == ["None-0", "a-35"]


def test_a_fifo_queue_keeps_its_own_order(sqs: Any) -> None:
    url = queue(sqs, "steps.fifo", FifoQueue="true", ContentBasedDeduplication="true")
    send(sqs, url, "a", 40)
    take(sqs, url, 10)  # a FIFO queue holds back the rest of group a while these are held
    send(sqs, url, "b", 1)
    assert take(sqs, url, 1) == ["b-0"]
    assert take(sqs, url, 1) == []
