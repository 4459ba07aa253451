"""The local stack as a subprocess (``python -m infra.cli.main dev``) on free ports, for tests and
benchmarks that talk to it over real sockets only.

:func:`launch` starts one and returns when ``/health`` answers and the banner has named the
moto endpoint and the run-requests queue; :meth:`StackProcess.stop` sends SIGINT, as Ctrl-C
would, and returns the exit code; :meth:`StackProcess.kill_all` is ``kill -9`` of the stack
and its moto process at once; :meth:`StackProcess.restart` starts the same stack again (same
ports, same data folder). Each stack keeps its data in a folder of its own (a temporary one
unless given). Output is drained by threads (a full pipe would block the stack) and kept for
assertions and failure messages.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
# The banner is for people; these are its only lines read here (infra/stack/local_stack.py:banner).
_MOTO_LINE = re.compile(r"^\s*moto\s+(http://\S+)", re.MULTILINE)
_QUEUE_LINE = re.compile(r"^\s*run requests queue\s+(http://\S+)", re.MULTILINE)
_PORT_TAKEN = "already in use"


class StackFailed(Exception):
    """The stack exited or did not come up in time; the message carries its output."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports: all sockets are held open until every port is chosen,
    so the kernel cannot hand the same port out twice."""
    with ExitStack() as held:
        ports = []
        for _ in range(count):
            probe = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            probe.bind((HOST, 0))
            ports.append(int(probe.getsockname()[1]))
        return ports


def stack_env() -> dict[str, str]:
    """This environment without anything that could point the stack at a real account."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "HOPGRAPH_", "POWERTOOLS_"))
    }
    env["PYTHONUNBUFFERED"] = "1"
    return env


def temporary_data_folder() -> Path:
    """A data folder removed when the tests end."""
    folder = Path(tempfile.mkdtemp(prefix="hopgraph-e2e-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def _drain(stream: IO[str], lines: list[str]) -> None:
    for line in stream:
        lines.append(line)


@dataclass
class StackProcess:
    """One running ``hopgraph dev`` and the addresses it serves."""

    process: subprocess.Popen[str]
    port: int
    ws_port: int
    dispatch: str
    moto_port: int
    data: Path
    moto_endpoint: str = ""
    run_requests_queue_url: str = ""
    _stdout: list[str] = field(default_factory=list)
    _stderr: list[str] = field(default_factory=list)
    _readers: list[threading.Thread] = field(default_factory=list)

    @property
    def api(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://{HOST}:{self.ws_port}"

    @property
    def stdout(self) -> str:
        return "".join(self._stdout)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    @classmethod
    def spawn(
        cls,
        dispatch: str = "sqs",
        ports: tuple[int, int, int] | None = None,
        data: Path | None = None,
        *options: str,
        python: str = sys.executable,
        cwd: Path = REPO,
    ) -> StackProcess:
        """Start the process without waiting for it: on ``ports`` (HTTP, WebSocket, moto;
        free ones unless given), keeping its data in ``data`` (a new temporary folder unless
        given), with more ``hopgraph dev`` options; run by ``python`` in the folder ``cwd``."""
        port, ws_port, moto_port = ports or free_ports(3)
        data = data or temporary_data_folder()
        command = [python, "-m", "infra.cli.main", "dev", "--host", HOST]
        command += ["--port", str(port), "--ws-port", str(ws_port), "--dispatch", dispatch]
        command += ["--moto-port", str(moto_port), "--data", str(data), *options]
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=stack_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: kill_all reaches moto's process too
        )
        stack = cls(process, port, ws_port, dispatch, moto_port, data)
        for stream, lines in ((process.stdout, stack._stdout), (process.stderr, stack._stderr)):
            assert stream is not None
            reader = threading.Thread(target=_drain, args=(stream, lines), daemon=True)
            reader.start()
            stack._readers.append(reader)
        return stack

    def wait_ready(self, timeout: float = 45.0) -> None:
        """Return once ``/health`` answers and the banner is read; StackFailed otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._join_readers()
                raise StackFailed(self.describe(f"exited with {self.process.returncode}"))
            if self._healthy() and self._read_banner():
                return
            time.sleep(0.1)
        raise StackFailed(self.describe(f"not ready after {timeout:.0f} s"))

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.api}/health", timeout=1.0).status_code == 200
        except httpx.TransportError:
            return False

    def _read_banner(self) -> bool:
        out = self.stdout
        moto, queue = _MOTO_LINE.search(out), _QUEUE_LINE.search(out)
        if moto is None or queue is None:
            return False
        self.moto_endpoint, self.run_requests_queue_url = moto.group(1), queue.group(1)
        return True

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT (Ctrl-C), then the exit code; killed, and StackFailed, if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            hung = self.describe(f"still running {timeout:.0f} s after SIGINT")
            raise StackFailed(hung) from None
        self._join_readers()
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._join_readers()

    def kill_all(self) -> None:
        """``kill -9`` of the stack and of its moto process, at the same instant."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self._join_readers()

    def restart(self, *options: str, timeout: float = 45.0) -> StackProcess:
        """The same stack started again, once this one has exited: same ports, same data."""
        again = StackProcess.spawn(
            self.dispatch, (self.port, self.ws_port, self.moto_port), self.data, *options
        )
        again.wait_ready(timeout)
        return again

    def _join_readers(self) -> None:
        for reader in self._readers:
            reader.join(timeout=5)

    def describe(self, what: str) -> str:
        return (
            f"hopgraph dev (dispatch {self.dispatch}, ports {self.port}/{self.ws_port}) {what}\n"
            f"--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}"
        )


def launch(
    dispatch: str = "sqs",
    timeout: float = 45.0,
    attempts: int = 3,
    data: Path | None = None,
    options: tuple[str, ...] = (),
) -> StackProcess:
    """A ready stack on free ports; retried on new ports if one was taken in the meantime
    (the ports are free when chosen, but another process may bind them before the stack)."""
    for attempt in range(attempts):
        stack = StackProcess.spawn(dispatch, None, data, *options)
        try:
            stack.wait_ready(timeout)
            return stack
        except StackFailed:
            stack.kill()
            if _PORT_TAKEN not in stack.stderr or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def run_to_end(
    client: httpx.Client, graph_id: str, state: dict[str, Any], poll_s: float, deadline_s: float
) -> tuple[float, dict[str, Any]]:
    """Start a run of ``graph_id`` on ``state`` over HTTP and poll it until it is over: the
    seconds from the start request to the poll that found it completed, and the run as that
    poll read it. Raises if it is still running after ``deadline_s``, or ended otherwise."""
    started = time.perf_counter()
    reply = client.post("/runs", json={"graph_id": graph_id, "input": state})
    run_id = reply.raise_for_status().json()["run_id"]
    while (run := client.get(f"/runs/{run_id}").raise_for_status().json())["status"] == "running":
        if time.perf_counter() - started > deadline_s:
            raise RuntimeError(f"run {run_id} still running after {deadline_s:.0f} s")
        time.sleep(poll_s)
    if run["status"] != "completed":
        raise RuntimeError(f"run {run_id} ended {run['status']}: {run.get('error')}")
    return time.perf_counter() - started, run
