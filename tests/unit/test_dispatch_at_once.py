"""A dispatch of many hops sends several calls at once (functions/aws/dispatch.py:
``send_all``): a map's first window of 100 hops must not hold the request that starts the
run for a hundred round trips, and a failed call still fails the dispatch."""

from __future__ import annotations

import threading
import time

import boto3
import pytest
from moto import mock_aws

from engine.ports import Hop
from functions.aws.dispatch import SENDS_AT_ONCE, SqsStepQueue, send_all


class Probe:
    """A send that records each part and how many sends were in flight at most."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.sent: list[int] = []
        self.in_flight = 0
        self.most = 0
        self.fail_on = fail_on
        self._lock = threading.Lock()

    def __call__(self, part: int) -> None:
        with self._lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        time.sleep(0.01)  # long enough for the pool's other threads to start theirs
        with self._lock:
            self.in_flight -= 1
            self.sent.append(part)
        if part == self.fail_on:
            raise ConnectionError(f"part {part} was refused")


def test_every_part_is_sent_several_at_once_within_the_bound() -> None:
    probe = Probe()
    send_all(probe, list(range(40)))
    assert sorted(probe.sent) == list(range(40))
    assert 1 < probe.most <= SENDS_AT_ONCE


def test_one_at_a_time_keeps_the_order() -> None:
    probe = Probe()
    send_all(probe, list(range(12)), at_once=1)
    assert probe.sent == list(range(12)) and probe.most == 1


def test_a_failed_send_fails_the_dispatch_after_the_others_returned() -> None:
    probe = Probe(fail_on=3)
    with pytest.raises(ConnectionError, match="part 3"):
        send_all(probe, list(range(20)))
    assert sorted(probe.sent) == list(range(20))  # nothing left running behind the error


def test_a_window_of_hops_reaches_the_queue_whole() -> None:
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="steps")["QueueUrl"]
        hops = [Hop("r1", "g1", 0, "item", index=i, parallel=True) for i in range(100)]
        SqsStepQueue(url, sqs).dispatch_batch(hops)
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
        assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "100"
