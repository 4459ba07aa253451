"""The local stack's moto process, in this process: its persistence (infra/moto/persistence.py)
brings back items and messages as they were, and its transactions (infra/moto/speedups.py)
roll back only what they wrote. moto stands in for DynamoDB and SQS, as in the stack."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError
from moto import mock_aws
from moto.moto_api._internal import mock_random
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.test import EnvironBuilder, run_wsgi_app

from infra.moto import persistence as persistence_module
from infra.moto.fidelity import serialize_dynamodb_writes, serialize_sqs
from infra.moto.lookups import remembered_lookups
from infra.moto.persistence import Journal, Persistence, RestoreFailed, Snapshot
from infra.moto.socket import SocketServer, SocketTransport
from infra.moto.speedups import (
    cheaper_requests,
    faster_moto,
    faster_moto_server,
    transactions_undo_their_own_writes,
)
from infra.moto.wsgi import DirectApplication
from infra.stack import local_clients

TABLE = "t"
REGION = "us-east-1"


@contextlib.contextmanager
def moto_as_in_the_stack(folder: Path) -> Iterator[Persistence]:
    """moto patched as infra/moto/process.py patches it, with a journal in ``folder``."""
    lock = threading.RLock()
    journal = Journal(folder)
    journal.lock()
    persistence = Persistence(
        journal, lock, redelivery_s=2.0, forget=lambda pk: pk.startswith("CONN#")
    )
    with contextlib.ExitStack() as patches:
        patches.enter_context(mock_aws())
        patches.enter_context(faster_moto())
        patches.enter_context(cheaper_requests())
        patches.enter_context(remembered_lookups())
        patches.enter_context(transactions_undo_their_own_writes())
        patches.enter_context(persistence.tracking())
        patches.enter_context(serialize_dynamodb_writes(lock))
        patches.enter_context(serialize_sqs(lock))
        yield persistence


def clients() -> tuple[Any, Any, str]:
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"},
                   {"AttributeName": "SK", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"},
                              {"AttributeName": "SK", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )  # fmt: skip
    sqs = boto3.client("sqs", region_name=REGION)
    return dynamodb, sqs, sqs.create_queue(QueueName="q")["QueueUrl"]


def item(pk: str, sk: str = "X", **values: str) -> dict[str, Any]:
    return {"PK": {"S": pk}, "SK": {"S": sk}, **{k: {"S": v} for k, v in values.items()}}


def test_items_and_messages_come_back_as_they_were(tmp_path: Path) -> None:
    # Given items, a connection, a delayed message and a message in flight, written down
    with moto_as_in_the_stack(tmp_path) as persistence:
        dynamodb, sqs, url = clients()
        persistence.restore()
        dynamodb.put_item(TableName=TABLE, Item=item("RUN#r1", "RUN", status="running"))
        dynamodb.put_item(TableName=TABLE, Item=item("CONN#c1", "CONN"))
        delayed = sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=60)
        sqs.send_message(QueueUrl=url, MessageBody="hop")
        (received,) = sqs.receive_message(QueueUrl=url, VisibilityTimeout=600)["Messages"]
        persistence.flush()
        persistence.stop()

    # When moto starts empty and the journal is restored
    with moto_as_in_the_stack(tmp_path) as persistence:
        dynamodb, sqs, url = clients()
        restored = persistence.restore()

        # Then the run is back and the connection is not (it died with the gateway)
        assert restored == {"items": 1, "messages": 2, "skipped": 1, "objects": 0}
        got = dynamodb.get_item(TableName=TABLE, Key={"PK": {"S": "RUN#r1"}, "SK": {"S": "RUN"}})
        assert got["Item"]["status"] == {"S": "running"}

        # And the message in flight comes back within the redelivery time, same id, counted
        deadline = time.monotonic() + 5
        messages: list[dict[str, Any]] = []
        while not messages and time.monotonic() < deadline:
            messages = sqs.receive_message(
                QueueUrl=url, AttributeNames=["All"], WaitTimeSeconds=1
            ).get("Messages", [])
        assert [m["MessageId"] for m in messages] == [received["MessageId"]]
        assert messages[0]["Attributes"]["ApproximateReceiveCount"] == "2"

        # And the delayed message is still delayed, with its id
        counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert counts["ApproximateNumberOfMessagesDelayed"] == "1"
        state = persistence.journal.load()
        ids = {m["id"] for queue in state.queues.values() for m in queue}
        assert delayed["MessageId"] in ids
        persistence.stop()


def test_a_cancelled_transaction_puts_back_only_what_it_changed(tmp_path: Path) -> None:
    with moto_as_in_the_stack(tmp_path):
        dynamodb, _, _ = clients()
        dynamodb.put_item(TableName=TABLE, Item=item("A", v="1"))
        dynamodb.put_item(TableName=TABLE, Item=item("B", v="1"))

        # When a transaction puts a new item, updates A, and fails its condition on B
        with pytest.raises(ClientError) as cancelled:
            dynamodb.transact_write_items(TransactItems=[
                {"Put": {"TableName": TABLE, "Item": item("NEW", v="1")}},
                {"Update": {"TableName": TABLE, "Key": {"PK": {"S": "A"}, "SK": {"S": "X"}},
                            "UpdateExpression": "SET v = :v",
                            "ExpressionAttributeValues": {":v": {"S": "2"}}}},
                {"ConditionCheck": {"TableName": TABLE,
                                    "Key": {"PK": {"S": "B"}, "SK": {"S": "X"}},
                                    "ConditionExpression": "attribute_not_exists(PK)"}},
            ])  # fmt: skip

        # Then nothing it wrote remains, and every other item is as it was
        assert cancelled.value.response["Error"]["Code"] == "TransactionCanceledException"
        items = dynamodb.scan(TableName=TABLE)["Items"]
        assert sorted((i["PK"]["S"], i["v"]["S"]) for i in items) == [("A", "1"), ("B", "1")]

        # And a transaction that passes writes everything
        dynamodb.transact_write_items(TransactItems=[
            {"Put": {"TableName": TABLE, "Item": item("NEW", v="1")}},
            {"Delete": {"TableName": TABLE, "Key": {"PK": {"S": "B"}, "SK": {"S": "X"}}}},
        ])  # fmt: skip
        items = dynamodb.scan(TableName=TABLE)["Items"]
        assert sorted(i["PK"]["S"] for i in items) == ["A", "NEW"]


EVERY_KIND = {
    "PK": {"S": "kinds"}, "SK": {"S": "X"},
    "s": {"S": "text é"}, "n": {"N": "-12.5"}, "yes": {"BOOL": True}, "none": {"NULL": True},
    "b": {"B": b"\x00\xffbytes"}, "ss": {"SS": ["a", "b"]}, "ns": {"NS": ["1", "2"]},
    "bs": {"BS": [b"x", b"y"]}, "l": {"L": [{"S": "a"}, {"N": "1"}, {"M": {"k": {"B": b"z"}}}]},
    "m": {"M": {"inner": {"L": [{"BOOL": False}, {"SS": ["c"]}]}, "e": {"M": {}}}},
}  # fmt: skip


def test_items_of_every_kind_come_back_as_they_were(tmp_path: Path) -> None:
    # Given an item with every kind of attribute value, binary ones among them (a step's
    # compressed state is binary), written down
    key = {"PK": EVERY_KIND["PK"], "SK": EVERY_KIND["SK"]}
    with moto_as_in_the_stack(tmp_path) as persistence:
        dynamodb = clients()[0]
        persistence.restore()
        dynamodb.put_item(TableName=TABLE, Item=EVERY_KIND)
        written = dynamodb.get_item(TableName=TABLE, Key=key)["Item"]
        persistence.stop()

    # When moto starts empty and the journal is restored, twice: from the journal's frames,
    # then from the state file the first restore compacted them into
    back = []
    for _ in range(2):
        with moto_as_in_the_stack(tmp_path) as persistence:
            dynamodb = clients()[0]
            restored = persistence.restore()
            back.append((restored, dynamodb.get_item(TableName=TABLE, Key=key).get("Item")))
            persistence.stop()

    # Then the item is back both times, every value as it was
    assert back == [({"items": 1, "messages": 0, "skipped": 0, "objects": 0}, written)] * 2


def test_a_journal_is_compacted_after_a_length_that_grows_with_its_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a floor of 2,000 bytes before a compaction, and four times the state above it
    monkeypatch.setattr(persistence_module, "COMPACT_AFTER_BYTES", 2_000)
    monkeypatch.setattr(persistence_module, "COMPACT_AFTER_STATES", 4)
    journal = Journal(tmp_path)
    journal.lock()
    table = ("123456789012", REGION, TABLE)

    def state_of(count: int) -> Snapshot:
        return Snapshot(items={table: {f"k{n}": item(f"RUN#{n}") for n in range(count)}})

    # When a small state and then a large one are compacted
    journal.compact(state_of(2))
    small = journal.compact_after
    journal.compact(state_of(200))
    large = journal.compact_after
    state_bytes = (tmp_path / f"state-{journal.generation}.json").stat().st_size
    journal.close()

    # Then the small one keeps the floor; the large one waits for four times its state
    assert small == 2_000
    assert state_bytes > 2_000
    assert large == 4 * state_bytes


def test_an_item_that_cannot_come_back_stops_the_restore_and_keeps_the_folder(
    tmp_path: Path,
) -> None:
    # Given a data folder holding an item the table cannot take (its sort key is missing)
    journal = Journal(tmp_path)
    journal.lock()
    broken = Snapshot(items={("123456789012", REGION, TABLE): {"k": {"PK": {"S": "RUN#x"}}}})
    journal.compact(broken)
    journal.close()
    files = sorted(p.name for p in tmp_path.iterdir())

    # When it is restored
    with moto_as_in_the_stack(tmp_path) as persistence:
        clients()
        with pytest.raises(RestoreFailed) as failed:
            persistence.restore()
        persistence.stop()

    # Then the restore says which item, and the folder is as it was: nothing was compacted away
    assert "the item k of t" in str(failed.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == files


def raw_responses(dynamodb: Any) -> list[bytes]:
    """The JSON moto answers GetItem, Query and Scan of ``EVERY_KIND`` with, byte for byte."""
    bodies: list[bytes] = []
    dynamodb.meta.events.register(
        "before-parse.dynamodb.*", lambda response_dict, **_: bodies.append(response_dict["body"])
    )
    key = {"PK": EVERY_KIND["PK"], "SK": EVERY_KIND["SK"]}
    dynamodb.get_item(TableName=TABLE, Key=key)
    dynamodb.query(
        TableName=TABLE, KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": EVERY_KIND["PK"]},
    )  # fmt: skip
    dynamodb.scan(TableName=TABLE)
    return bodies


def test_attribute_values_are_serialized_as_moto_serializes_them() -> None:
    # Given an item with an attribute of every kind, read through moto as it comes
    with mock_aws():
        dynamodb, _, _ = clients()
        dynamodb.put_item(TableName=TABLE, Item=EVERY_KIND)
        expected = raw_responses(dynamodb)

        # When the same reads go through the faster serialization
        with faster_moto_server():
            fast = raw_responses(boto3.client("dynamodb", region_name=REGION))

    # Then the responses are the same JSON, byte for byte
    assert len(expected) == 3
    assert fast == expected


Answer = tuple[int, dict[str, str], bytes]


class Served:
    """boto3 clients whose requests a WSGI application answers, in this process (what the
    moto process's server hands it), and every answer: status, headers, body."""

    def __init__(self, app: Any, config: Callable[[str], Any] = lambda service: None) -> None:
        self.app, self.config, self.answers = app, config, list[Answer]()
        self.signed: list[bool] = []

    def client(self, service: str) -> Any:
        client = boto3.client(
            service, region_name=REGION, endpoint_url="http://localhost:5000",
            config=self.config(service),
        )  # fmt: skip
        client.meta.events.register("before-send", self.send)
        return client

    def send(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        sent = request.headers.items()
        self.signed.append("Authorization" in request.headers)
        headers = [(k, v.decode() if isinstance(v, bytes) else v) for k, v in sent]
        environ = EnvironBuilder(
            method=request.method, base_url="http://localhost:5000", path=request.url[21:],
            headers=headers, data=request.body,
        ).get_environ()  # fmt: skip
        body, status, answered = run_wsgi_app(self.app, environ)
        answer = (int(status.split()[0]), dict(answered), b"".join(body))
        self.answers.append(answer)
        return AWSResponse(request.url, answer[0], answer[1], _Raw(answer[2]))


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def calls_of_the_stack(served: Served) -> None:
    """DynamoDB and SQS calls the stack makes, their errors among them (random ids seeded)."""
    dynamodb, sqs = served.client("dynamodb"), served.client("sqs")
    mock_random.seed(7)
    url = sqs.get_queue_url(QueueName="q")["QueueUrl"]
    dynamodb.put_item(TableName=TABLE, Item=item("RUN#r", "RUN", status="running"))
    dynamodb.update_item(
        TableName=TABLE, Key={"PK": {"S": "RUN#r"}, "SK": {"S": "RUN"}},
        UpdateExpression="SET #s = :s", ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": "done"}}, ReturnValues="ALL_NEW",
    )  # fmt: skip
    dynamodb.query(
        TableName=TABLE, KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": {"S": "RUN#r"}},
    )  # fmt: skip
    with pytest.raises(ClientError):  # conditional check failed
        dynamodb.put_item(
            TableName=TABLE,
            Item=item("RUN#r", "RUN"),
            ConditionExpression="attribute_not_exists(PK)",
        )
    with pytest.raises(ClientError):  # no such table
        dynamodb.get_item(TableName="missing", Key={"PK": {"S": "x"}})
    sqs.send_message(QueueUrl=url, MessageBody="hop", MessageAttributes={
        "kind": {"DataType": "String", "StringValue": "step"}})  # fmt: skip
    (message,) = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"]
    sqs.delete_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "1", "ReceiptHandle": message["ReceiptHandle"]},
            {"Id": "2", "ReceiptHandle": "x"},
        ],
    )
    sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    with pytest.raises(ClientError):  # no such queue
        sqs.send_message(QueueUrl=url + "-missing", MessageBody="hop")


def test_the_direct_application_answers_as_motos_own_application() -> None:
    # Given moto's server application, and the direct one in front of it
    motos = DomainDispatcherApplication(create_backend_app)
    passed_on: list[str] = []

    def fallback(environ: dict[str, Any], start_response: Any) -> Any:
        passed_on.append(environ.get("HTTP_X_AMZ_TARGET", environ["PATH_INFO"]))
        return motos(environ, start_response)

    answers = []
    for app in (motos, DirectApplication(fallback)):
        with mock_aws():  # the same table and queue each time
            clients()
            served = Served(app)

            # When the stack's calls go through it
            calls_of_the_stack(served)
            answers.append(served.answers)
            direct_calls = len(passed_on)

            # And a call of a service it does not serve directly
            served.client("s3").list_buckets()

    # Then every answer is the same status, headers and body, errors too
    assert len(answers[0]) == 12
    assert answers[1] == answers[0]
    # And the direct application answered the stack's calls itself, and passed on the rest
    assert direct_calls == 0
    assert passed_on == ["/"]


def test_the_stacks_unsigned_calls_are_answered_as_signed_ones() -> None:
    # Given signed clients that moto's own application answers, and the stack's clients
    # (infra/stack/local_clients.py) that the direct application answers
    def stacks(service: str) -> Any:
        return local_clients.config(service, 2, REGION)

    answers, signed = [], []
    for app, config in ((DomainDispatcherApplication(create_backend_app), None),
                        (DirectApplication(DomainDispatcherApplication(create_backend_app)),
                         stacks)):  # fmt: skip
        with mock_aws():
            clients()
            served = Served(app, config or (lambda service: None))

            # When the stack's calls go through it
            calls_of_the_stack(served)
            answers.append(served.answers)
            signed.append(served.signed)

    # Then the stack's requests are unsigned, and answered with the same status, headers and
    # body (same region, same account: the queue's URL among them), errors too
    assert len(answers[0]) == 11
    assert signed[0] == [True] * len(answers[0])
    assert signed[1] == [False] * len(answers[1])
    assert answers[1] == answers[0]


def test_a_client_of_another_region_keeps_signing() -> None:
    # Given the stack's settings for a client of another region, and for Lambda
    # When they are built
    # Then moto would not know the region unsigned, nor does the Invoke endpoint expect it
    assert local_clients.config("dynamodb", 2, "eu-west-1").signature_version is None
    assert local_clients.config("lambda", 2, REGION).signature_version is None
    assert local_clients.config("sqs", 2, REGION).signature_version is not None


def deletes(sqs: Any, url: str) -> tuple[list[Any], list[str]]:
    """What SQS answers to deleting messages every way the stack can (the answers without
    their metadata), and the request ids of all the calls."""
    answers: list[Any] = []
    for body in ("a", "b", "c"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    first = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=3, VisibilityTimeout=0)
    again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=3, VisibilityTimeout=0)
    old, new = (sorted(r["Messages"], key=lambda m: m["Body"]) for r in (first, again))
    entries = [{"Id": "old", "ReceiptHandle": old[0]["ReceiptHandle"]},
               {"Id": "new", "ReceiptHandle": new[1]["ReceiptHandle"]},
               {"Id": "none", "ReceiptHandle": "not-a-handle"}]  # fmt: skip
    answers.append(sqs.delete_message_batch(QueueUrl=url, Entries=entries))
    answers.append(sqs.delete_message(QueueUrl=url, ReceiptHandle=new[1]["ReceiptHandle"]))
    with pytest.raises(ClientError) as invalid:
        sqs.delete_message(QueueUrl=url, ReceiptHandle="not-a-handle")
    answers.append(invalid.value.response)
    left = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=3, VisibilityTimeout=0)
    answers.append(sorted(m["Body"] for m in left["Messages"]))
    request_ids = [a.pop("ResponseMetadata")["RequestId"] for a in answers if isinstance(a, dict)]
    return answers, request_ids


def test_cheaper_requests_answer_as_moto_does() -> None:
    # Given a queue, and what moto answers to deleting its messages every way
    with mock_aws():
        _, sqs, url = clients()
        expected, _ = deletes(sqs, url)

    # When the same deletes go through the cheaper requests
    with mock_aws(), cheaper_requests():
        _, sqs, url = clients()
        answers, request_ids = deletes(sqs, url)

    # Then the answers are the same, and the request ids are moto's kind (52 letters, digits)
    assert answers == expected
    assert expected[-1] == ["c"]  # "a" deleted by its first receipt handle, "b" by its second
    assert len(request_ids) == 3
    assert all(re.fullmatch("[A-Za-z0-9]{52}", request_id) for request_id in request_ids)


def puts_near_the_size_limit(dynamodb: Any) -> list[Any]:
    """What moto answers to putting items of every kind, and of sizes about its limit."""
    answers: list[Any] = []
    for size in range(404_980, 405_000):
        try:
            dynamodb.put_item(TableName=TABLE, Item=item("big", big="x" * size, n="7"))
            answers.append("stored")
        except ClientError as exc:
            answers.append(exc.response["Error"])
    dynamodb.put_item(TableName=TABLE, Item=EVERY_KIND)
    key = {"PK": EVERY_KIND["PK"], "SK": EVERY_KIND["SK"]}
    answers.append(dynamodb.get_item(TableName=TABLE, Key=key)["Item"])
    return answers


def test_new_items_are_sized_and_kept_as_moto_does() -> None:
    # Given what moto answers to items about its size limit, and to an item of every kind
    with mock_aws():
        expected = puts_near_the_size_limit(clients()[0])

    # When the same items are put through the cheaper requests
    with mock_aws(), cheaper_requests():
        answers = puts_near_the_size_limit(clients()[0])

    # Then the same are stored, the same refused, and the item reads back the same
    assert answers == expected
    assert "stored" in expected and any(isinstance(a, dict) and "Code" in a for a in expected)


class ServedOverTheSocket(Served):
    """The same clients, whose requests go over infra/moto/socket.py to ``app``."""

    def __init__(self, app: Any, path: str) -> None:
        super().__init__(app)
        self.server = SocketServer(path, app, server_name="localhost", server_port=5000)
        served = self

        class Recording(SocketTransport):
            def _exchange(self, request: Any) -> Answer:
                status, headers, body = super()._exchange(request)
                served.answers.append((status, dict(headers), body))
                return status, headers, body

        self.transport = Recording(path)

    def client(self, service: str) -> Any:
        client = boto3.client(service, region_name=REGION, endpoint_url="http://localhost:5000")
        self.transport.install(client)
        return client


def test_the_socket_answers_as_the_http_endpoint(tmp_path: Path) -> None:
    # Given the moto process's application, as its HTTP endpoint serves it and on its socket
    answers = []
    for over_the_socket in (False, True):
        with mock_aws():  # the same table and queue each time
            clients()
            app = DirectApplication(DomainDispatcherApplication(create_backend_app))
            if over_the_socket:
                served: Served = ServedOverTheSocket(app, str(tmp_path / "moto.sock"))
                served.server.start()
            else:
                served = Served(app)

            # When the stack's calls go through it
            try:
                calls_of_the_stack(served)
            finally:
                if over_the_socket:
                    served.server.stop()
            answers.append(served.answers)

    # Then every answer is the same status, headers and body, errors too
    assert len(answers[0]) == 11
    assert answers[1] == answers[0]


def test_a_call_to_a_stopped_socket_is_a_connection_error(tmp_path: Path) -> None:
    # Given a client whose moto socket is gone (the moto process has stopped)
    client = boto3.client(
        "sqs", region_name=REGION, endpoint_url="http://localhost:5000",
        aws_access_key_id="local", aws_secret_access_key="local",
        config=Config(retries={"mode": "standard", "max_attempts": 1}),
    )  # fmt: skip
    SocketTransport(str(tmp_path / "moto.sock")).install(client)

    # When it calls, Then botocore's connection error says where it could not connect
    with pytest.raises(EndpointConnectionError, match="localhost:5000"):
        client.list_queues()


def test_deletes_by_remembered_handles_answer_as_moto_does() -> None:
    # Given what moto answers to deleting messages every way the stack can
    with mock_aws(), cheaper_requests():
        _, sqs, url = clients()
        expected, _ = deletes(sqs, url)

    # When the same deletes find their messages by the handles receives gave out
    with mock_aws(), cheaper_requests(), remembered_lookups():
        _, sqs, url = clients()
        answers, _ = deletes(sqs, url)

    # Then the answers are the same: deleted by an old handle and by a new one, refused the
    # handle that was never given, and the message left is the one not deleted
    assert answers == expected
    assert expected[-1] == ["c"]


def conditional_calls(dynamodb: Any) -> list[Any]:
    """Conditional writes and filtered queries, each expression several times with other
    values, refusals among them: what DynamoDB answers, without the request ids."""
    answers: list[Any] = []

    def call(method: Any, **kwargs: Any) -> None:
        try:
            answer = method(TableName=TABLE, **kwargs)
            answer.pop("ResponseMetadata")
        except ClientError as exc:
            answer = exc.response["Error"]
        answers.append(answer)

    for n in range(3):
        for _ in range(2):  # the second is refused: the slot is taken
            call(dynamodb.put_item, Item=item("RUN#c", f"STEP#{n}", tool="t"),
                 ConditionExpression="attribute_not_exists(PK)")  # fmt: skip
        call(dynamodb.update_item, Key={"PK": {"S": "RUN#c"}, "SK": {"S": f"STEP#{n}"}},
             UpdateExpression="SET #s = :s",
             ConditionExpression="#s <> :s OR attribute_not_exists(#s)",
             ExpressionAttributeNames={"#s": "status"},
             ExpressionAttributeValues={":s": {"S": f"v{n % 2}"}},
             ReturnValues="ALL_NEW")  # fmt: skip
        call(dynamodb.query, KeyConditionExpression="PK = :pk AND begins_with(SK, :step)",
             FilterExpression="#s = :s", ExpressionAttributeNames={"#s": "status"},
             ExpressionAttributeValues={":pk": {"S": "RUN#c"}, ":step": {"S": "STEP#"},
                                        ":s": {"S": f"v{n % 2}"}})  # fmt: skip
    call(dynamodb.delete_item, Key={"PK": {"S": "RUN#c"}, "SK": {"S": "STEP#9"}},
         ConditionExpression="attribute_exists(PK)")  # fmt: skip
    return answers


def test_remembered_expressions_answer_as_moto_does() -> None:
    # Given what moto answers to conditional writes and filtered queries
    with mock_aws():
        dynamodb = clients()[0]
        expected = conditional_calls(dynamodb)

    # When the same calls reuse the expressions parsed before
    with mock_aws(), remembered_lookups():
        dynamodb = clients()[0]
        answers = conditional_calls(dynamodb)

    # Then every answer is the same, the refusals too
    assert answers == expected
    assert sum(1 for a in expected if a.get("Code") == "ConditionalCheckFailedException") == 4


def test_a_long_poll_on_the_socket_holds_off_no_other_call(tmp_path: Path) -> None:
    with mock_aws():
        # Given moto's application on a socket, and a receive waiting on an empty queue
        clients()
        app = DirectApplication(DomainDispatcherApplication(create_backend_app))
        receiving = threading.Event()

        def noting_receives(environ: dict[str, Any], start_response: Any) -> Any:
            if environ.get("HTTP_X_AMZ_TARGET") == "AmazonSQS.ReceiveMessage":
                receiving.set()
            return app(environ, start_response)

        served = ServedOverTheSocket(noting_receives, str(tmp_path / "moto.sock"))
        served.server.start()
        try:
            dynamodb, sqs = served.client("dynamodb"), served.client("sqs")
            url = sqs.get_queue_url(QueueName="q")["QueueUrl"]
            received: list[Any] = []
            waiting = threading.Thread(target=lambda: received.append(
                sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10)))  # fmt: skip
            waiting.start()
            assert receiving.wait(timeout=10)  # its request is in moto's hands

            # When other calls are made meanwhile
            dynamodb.put_item(TableName=TABLE, Item=item("RUN#w"))
            answered_while_waiting = waiting.is_alive()
            sqs.send_message(QueueUrl=url, MessageBody="hop")
            waiting.join(timeout=10)
        finally:
            served.server.stop()

    # Then they were answered while the receive waited, and the receive got the message
    assert answered_while_waiting
    assert [m["Body"] for m in received[0]["Messages"]] == ["hop"]
