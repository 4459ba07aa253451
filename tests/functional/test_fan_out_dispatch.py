"""A large fan-out's sends go side by side, each hop once, in the caller's context; a small
one's go one after another, in order; a refused batch fails the dispatch once every send has
ended (functions/aws/dispatch.py, on moto's SQS)."""

from __future__ import annotations

import contextvars
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from engine.ports import Hop
from functions.aws import dispatch
from functions.aws.dispatch import SqsStepQueue
from infra.template import create_queues

CALLER: contextvars.ContextVar[str] = contextvars.ContextVar("caller", default="nobody")


@pytest.fixture
def sqs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


class Sends:
    """Watches SendMessageBatch calls: how many at once, whose context, and their order."""

    def __init__(self, sqs: Any, hold_s: float = 0.0, refuse_call: int | None = None) -> None:
        self.in_flight = self.most = 0
        self.callers: set[str] = set()
        self.first_seq: list[int] = []
        self._hold_s, self._refuse, self._calls = hold_s, refuse_call, 0
        self._lock = threading.Lock()
        sqs.meta.events.register("before-call.sqs.SendMessageBatch", self._before)
        sqs.meta.events.register("after-call.sqs.SendMessageBatch", self._after)

    def _before(self, params: Any, **_: Any) -> Any:
        with self._lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            self.callers.add(CALLER.get())
            self._calls += 1
            refused = self._calls == self._refuse
            first = json.loads(json.loads(params["body"])["Entries"][0]["MessageBody"])
            self.first_seq.append(first["seq"])
        time.sleep(self._hold_s)  # long enough for the other senders to start
        if refused:  # after-call still comes, with the error
            from botocore.awsrequest import AWSResponse

            error = {"Error": {"Code": "InvalidParameterValue", "Message": "refused"},
                     "ResponseMetadata": {"HTTPStatusCode": 400}}  # fmt: skip
            return AWSResponse("https://sqs.us-east-1.amazonaws.com/", 400, {}, None), error
        return None

    def _after(self, **_: Any) -> None:
        with self._lock:
            self.in_flight -= 1


def hops(count: int) -> list[Hop]:
    return [Hop("r_1", "g_1", i, "grade", 10, index=i, parallel=True) for i in range(count)]


def queued(sqs: Any, url: str) -> list[int]:
    seqs: list[int] = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        seqs += [json.loads(m["Body"])["seq"] for m in batch]
    return sorted(seqs)


def test_a_large_fan_out_sends_side_by_side_each_hop_once(sqs: Any) -> None:
    # Given a map of 300 items to dispatch: 30 batches, above the threshold
    url = create_queues(sqs, {})["StepQueue"]
    sends = Sends(sqs, hold_s=0.02)
    CALLER.set("invocation-7")
    # When it is dispatched
    SqsStepQueue(url, sqs).dispatch_batch(hops(300))
    # Then several sends were in flight at once, each in the caller's context, and every
    # hop is on the queue exactly once
    assert 1 < sends.most <= dispatch.SENDERS
    assert sends.callers == {"invocation-7"}
    assert queued(sqs, url) == list(range(300))


def test_a_small_fan_out_sends_one_batch_after_another_in_order(sqs: Any) -> None:
    # Given a fan-out of 160 hops: 16 batches, the threshold
    url = create_queues(sqs, {})["StepQueue"]
    sends = Sends(sqs)
    # When it is dispatched
    SqsStepQueue(url, sqs).dispatch_batch(hops(16 * 10))
    # Then its sends went one at a time, in the order of its hops
    assert sends.most == 1
    assert sends.first_seq == list(range(0, 160, 10))


def test_a_refused_batch_fails_the_dispatch_after_every_send_ended(sqs: Any) -> None:
    # Given SQS refusing the fifth of 30 batches
    url = create_queues(sqs, {})["StepQueue"]
    sends = Sends(sqs, hold_s=0.01, refuse_call=5)
    # When the fan-out is dispatched
    with pytest.raises(Exception, match="refused"):
        SqsStepQueue(url, sqs).dispatch_batch(hops(300))
    # Then the other batches were all sent, and none is still in flight
    assert sends.in_flight == 0
    assert len(queued(sqs, url)) == 290
