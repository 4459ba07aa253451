"""SendGroup: concurrent senders share SendMessageBatch calls, each returning once its own
message was accepted (functions/aws/send_group.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from functions.aws import send_group
from functions.aws.send_group import BATCH_BYTES, SendGroup, SendRefused


class Queue:
    """A send_batch that records each call; it can hold a call until released."""

    def __init__(self, refuse: frozenset[str] = frozenset(), fail: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.refuse = refuse
        self.fail = fail
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()

    def __call__(self, bodies: list[str]) -> list[str | None]:
        self.entered.set()
        self.hold.wait(5)
        self.calls.append(list(bodies))
        if self.fail:
            raise ConnectionError("the endpoint went away")
        return [f"refused {b}" if b in self.refuse else None for b in bodies]


def send_all(group: SendGroup, bodies: list[str]) -> dict[str, BaseException | None]:
    """Each body sent from its own thread; what each send raised (None: accepted)."""
    outcome: dict[str, BaseException | None] = {}

    def send(body: str) -> None:
        try:
            group.send(body)
            outcome[body] = None
        except BaseException as exc:
            outcome[body] = exc

    threads = [threading.Thread(target=send, args=(b,)) for b in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return outcome


def held(queue: Queue) -> tuple[SendGroup, threading.Thread]:
    """A group with one send ("first") in flight, held by ``queue`` until released."""
    group = SendGroup(queue)
    queue.hold.clear()
    first = threading.Thread(target=group.send, args=("first",))
    first.start()
    assert queue.entered.wait(5)
    return group, first


def meanwhile(group: SendGroup, bodies: list[str]) -> threading.Thread:
    """Send ``bodies`` from their own threads; returns once all of them wait in line."""
    thread = threading.Thread(target=send_all, args=(group, bodies))
    thread.start()
    waiting_now(group, len(bodies))
    return thread


def waiting_now(group: SendGroup, count: int) -> None:
    while sum(len(line.waiting) for line in group._lines.values()) < count:
        threading.Event().wait(0.01)


@pytest.fixture(autouse=True)
def one_partition() -> Iterator[None]:
    yield
    send_group.partition_by(lambda: None)


def test_a_lone_send_goes_at_once_in_a_call_of_its_own() -> None:
    queue = Queue()
    SendGroup(queue).send("hop-1")
    assert queue.calls == [["hop-1"]]


def test_sends_that_arrive_while_one_is_in_flight_share_the_next_calls() -> None:
    # Given a send in flight, held by the queue
    queue = Queue()
    group, first = held(queue)
    # When 15 more sends arrive meanwhile, and the first call returns
    later = [f"hop-{i:02d}" for i in range(15)]
    waiting = meanwhile(group, later)
    queue.hold.set()
    first.join(5)
    waiting.join(10)
    # Then they went ten to a call, in the order they came, each exactly once
    assert queue.calls[0] == ["first"]
    assert [len(call) for call in queue.calls[1:]] == [10, 5]
    assert sorted(b for call in queue.calls[1:] for b in call) == later


def test_only_the_refused_message_raises() -> None:
    queue = Queue(refuse=frozenset({"hop-3"}))
    outcome = send_all(SendGroup(queue), [f"hop-{i}" for i in range(6)])
    assert isinstance(outcome.pop("hop-3"), SendRefused)
    assert set(outcome.values()) == {None}


def test_a_failed_call_fails_every_message_it_carried() -> None:
    queue = Queue(fail=True)
    with pytest.raises(ConnectionError, match="the endpoint went away"):
        SendGroup(queue).send("hop-1")


def test_a_call_never_passes_the_batch_size_limit() -> None:
    queue = Queue()
    group, first = held(queue)
    big = ["a" * (BATCH_BYTES // 3), "b" * (BATCH_BYTES // 3), "c" * (BATCH_BYTES // 3), "d"]
    waiting = meanwhile(group, big)
    queue.hold.set()
    waiting.join(10)
    first.join(5)
    assert all(sum(len(b) for b in call) <= BATCH_BYTES for call in queue.calls)
    assert sorted(b for call in queue.calls[1:] for b in call) == sorted(big)


def test_messages_of_different_partitions_never_share_a_call() -> None:
    # Given senders in two partitions (say, two invocations with their own trace headers)
    local = threading.local()
    send_group.partition_by(lambda: getattr(local, "key", None))
    queue = Queue()
    group = SendGroup(queue)
    queue.hold.clear()

    def send_as(key: str, body: str) -> None:
        local.key = key
        group.send(body)

    first = threading.Thread(target=send_as, args=("a", "a-0"))
    first.start()
    assert queue.entered.wait(5)
    others = [threading.Thread(target=send_as, args=(k, f"{k}-{i}"))
              for i in (1, 2) for k in ("a", "b")]  # fmt: skip
    for thread in others:
        thread.start()
    waiting_now(group, 3)
    queue.hold.set()
    for thread in [first, *others]:
        thread.join(5)
    # Then every call carried one partition's messages only
    assert all(len({body[0] for body in call}) == 1 for call in queue.calls)
    assert sorted(b for call in queue.calls for b in call) == ["a-0", "a-1", "a-2", "b-1", "b-2"]


def test_a_sender_stopped_while_sending_for_others_hands_over() -> None:
    # Given a leader whose call is interrupted (the thread dies) with others waiting
    calls: list[list[str]] = []
    stop_first = threading.Event()
    stop_first.set()
    release = threading.Event()

    def send_batch(bodies: list[str]) -> list[str | None]:
        if stop_first.is_set():
            stop_first.clear()
            release.wait(5)
            raise KeyboardInterrupt  # not an Exception: the sending thread is stopped
        calls.append(list(bodies))
        return [None] * len(bodies)

    group = SendGroup(send_batch)
    died: list[BaseException] = []

    def leader() -> None:
        try:
            group.send("leader")
        except BaseException as exc:
            died.append(exc)

    first = threading.Thread(target=leader)
    first.start()
    while stop_first.is_set():
        threading.Event().wait(0.01)
    waiting = threading.Thread(target=send_all, args=(group, ["w-1", "w-2"]))
    waiting.start()
    waiting_now(group, 2)
    # When the leader dies
    release.set()
    first.join(5)
    waiting.join(5)
    # Then a waiting sender took over and its messages went
    assert isinstance(died[0], KeyboardInterrupt)
    assert sorted(b for call in calls for b in call) == ["w-1", "w-2"]


def test_messages_in_the_call_of_a_stopped_sender_are_refused_not_lost() -> None:
    # Given a send in flight and two more waiting, both then taken by one call that is
    # interrupted (its thread stopped)
    queue = Queue()
    group, first = held(queue)
    outcome: dict[str, BaseException | None] = {}
    waiting = threading.Thread(target=lambda: outcome.update(send_all(group, ["w-1", "w-2"])))
    waiting.start()
    waiting_now(group, 2)
    interrupted = [False]

    def stop_once(bodies: list[str]) -> list[str | None]:
        if not interrupted[0]:
            interrupted[0] = True
            raise KeyboardInterrupt
        return [None] * len(bodies)

    group._send_batch = stop_once
    # When the first call returns and the next one, carrying both, is stopped
    queue.hold.set()
    first.join(5)
    waiting.join(5)
    # Then neither waits forever: both raise, and their callers' messages are retried
    assert not waiting.is_alive()
    assert all(isinstance(exc, (SendRefused, KeyboardInterrupt)) for exc in outcome.values())
    assert len(outcome) == 2
