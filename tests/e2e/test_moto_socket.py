"""The moto process's Unix socket (infra/moto/socket.py), where the stack's own calls go: in
the data folder, or in a temporary folder when the data folder's path cannot hold one, and
gone when the process stops. Each test starts the real child process (infra/moto/process.py)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from infra.moto.process import MotoProcess
from infra.stack import local_clients
from tests.e2e.stack import free_ports

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def started(data: Path, monkeypatch: pytest.MonkeyPatch) -> MotoProcess:
    moto = MotoProcess("127.0.0.1", free_ports(1)[0], data, local_socket=True)
    moto.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.endpoint)  # never AWS, even by mistake
    return moto


def queues_made_over_the_socket(moto: MotoProcess) -> list[str]:
    sqs = local_clients.pooled("sqs", 2, local_clients.MOTO_DEFAULT_REGION, moto.socket_path)
    sqs.create_queue(QueueName="q")
    return [url.rsplit("/", 1)[1] for url in sqs.list_queues()["QueueUrls"]]


def test_the_socket_is_in_the_data_folder_and_gone_after_a_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a moto process whose data folder has a short path
    moto = started(tmp_path / "data", monkeypatch)
    try:
        # When the stack's client calls over its socket
        made = queues_made_over_the_socket(moto)
    finally:
        moto.stop()
    # Then the socket was in the data folder, moto answered, and the socket is gone
    assert moto.socket_path == str(tmp_path / "data" / "moto.sock")
    assert made == ["q"]
    assert not Path(moto.socket_path).exists()


def test_a_data_folder_too_deep_for_a_socket_has_it_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a data folder whose path is longer than a socket's can be (107 bytes)
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    moto = started(deep, monkeypatch)
    try:
        # When the stack's client calls over the socket
        made = queues_made_over_the_socket(moto)
        socket_path = Path(moto.socket_path)
        was_there = socket_path.exists()
    finally:
        moto.stop()
    # Then the socket was in a temporary folder of its own, moto answered, and the folder
    # is gone with the process
    assert socket_path.parent.parent == Path(tempfile.gettempdir())
    assert socket_path.parent.name.startswith("hopgraph-moto-") and was_there
    assert made == ["q"]
    assert not socket_path.parent.exists()
