"""moto in a process of its own, with the local stack's data kept on disk.

The stack's handlers and moto each want a core: moto does most of the work per request
(parsing, validating, serializing), so it runs in a child process, ``python -m
infra.moto.process``, and its GIL is not the handlers' one. The child applies moto's speed-ups
(infra/moto/speedups.py), the locks that keep its DynamoDB per-item atomic
(infra/moto/fidelity.py) and the persistence (infra/moto/persistence.py), then serves.

The parent talks to it over the child's stdin and stdout, one line each way:

    child -> "ready [socket path]"        serving on the port (and on that Unix socket)
    parent -> "restore"                   (after creating the template's resources)
    child -> "restored {json counts}"     the data is back; flushing every second
          or "error: {why}"               an item cannot come back: the child exits, the
                                          folder untouched (the stack says why, and stops)
    parent -> "stop", or closes stdin     final flush; the child exits 0

Closing stdin is what the parent's death does too, so the child never outlives the stack.
Ctrl-C reaches both processes; the child ignores it and waits for the parent's word.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

READY = "ready"


class MotoProcessFailed(Exception):
    """The moto process exited, or answered what it should not; the message says why."""


# ---------------------------------------------------------------------------- parent side
@dataclass
class MotoProcess:
    """The child, seen from the stack."""

    host: str
    port: int
    data: Path
    reset: bool = False
    redelivery_s: float = 2.0
    forget_prefix: str = ""
    verbose: bool = False
    threads: int = 64
    """Requests moto serves at once: above the stack's pollers, which each hold one open."""
    local_socket: bool = False
    """Also answer the stack's own calls on a Unix socket (infra/moto/socket.py)."""
    _process: subprocess.Popen[str] | None = None
    _socket_path: str = ""

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        """The child's process id (benchmarks measure its CPU time)."""
        assert self._process is not None, "not started"
        return self._process.pid

    @property
    def socket_path(self) -> str:
        """The Unix socket of the stack's own calls; "" without one."""
        return self._socket_path

    def start(self) -> None:
        command = [sys.executable, "-m", "infra.moto.process", "--host", self.host,
                   "--port", str(self.port), "--data", str(self.data),
                   "--redelivery-s", str(self.redelivery_s),
                   "--threads", str(self.threads)]  # fmt: skip
        if self.forget_prefix:
            command += ["--forget-prefix", self.forget_prefix]
        command += ["--reset"] if self.reset else []
        if self.local_socket:  # in the data folder: one stack per folder (the journal locks it)
            command += ["--socket", str(self.data / "moto.sock")]
        command += ["--verbose"] if self.verbose else []
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self._socket_path = self._expect(READY).partition(" ")[2]

    def restore(self) -> dict[str, int]:
        """Bring the data back (the tables and queues must exist); what came back."""
        self._send("restore")
        counts: dict[str, int] = json.loads(self._expect("restored").partition(" ")[2])
        return counts

    def stop(self, timeout: float = 30.0) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(OSError):
            self._send("stop")
        assert process.stdin is not None
        with contextlib.suppress(OSError):
            process.stdin.close()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _send(self, line: str) -> None:
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.write(line + "\n")
        self._process.stdin.flush()

    def _expect(self, word: str) -> str:
        assert self._process is not None and self._process.stdout is not None
        line = self._process.stdout.readline().strip()
        if not line.startswith(word):
            code = self._process.wait(timeout=10)
            raise MotoProcessFailed(line or f"the moto process exited with {code}")
        return line


# ---------------------------------------------------------------------------- child side
def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="moto for the hopgraph local stack")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--reset", action="store_true")
    parser.add_argument("--redelivery-s", type=float, default=2.0)
    parser.add_argument("--forget-prefix", default="", help="partition keys not restored")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--threads", type=int, default=64, help="requests served at once")
    parser.add_argument("--socket", default="", help="also answer the stack's calls here")
    return parser.parse_args(argv)


TERM_GRACE_S = 10
"""How long a SIGTERM leaves the parent to stop this process in order (its own stop waits
for the event sources' pollers, 5 s at most, first)."""

_channel: IO[str] = sys.stdout
"""Where the parent reads this process's words; anything else printed goes to stderr."""


def _say(line: str) -> None:
    print(line, file=_channel, flush=True)


def main(argv: list[str] | None = None, commands: IO[str] = sys.stdin) -> int:
    global _channel
    args = _arguments(argv)
    # moto prints to stdout (its server's start, with --verbose), which is the parent's line
    _channel, sys.stdout = sys.stdout, sys.stderr
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    os.umask(0o077)  # every file this process writes is in the data folder: its owner's only
    if args.verbose:  # every request, and moto's own info lines
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    from infra.moto.persistence import DataFolderInUse, Journal, Persistence

    journal = Journal(args.data)
    try:
        journal.lock()
    except DataFolderInUse as exc:
        _say(f"error: the data folder {exc}; choose another with --data")
        return 1
    if args.reset:
        journal.reset()
    lock = threading.RLock()
    prefix = args.forget_prefix
    persistence = Persistence(
        journal, lock, redelivery_s=args.redelivery_s,
        forget=lambda partition: bool(prefix) and partition.startswith(prefix),
    )  # fmt: skip
    with contextlib.ExitStack() as patches:
        _patch_moto(patches, persistence, lock)
        from infra.moto.server import MotoServer

        server = MotoServer(args.host, args.port, threads=args.threads, verbose=args.verbose)
        server.start()
        socket_path = _serve_socket(args, server.app, patches) if args.socket else ""
        try:
            _say(f"{READY} {socket_path}".rstrip())
            _serve(commands, persistence)
        finally:
            persistence.stop()
            server.stop()
    return 0


def _serve_socket(args: argparse.Namespace, app: Any, patches: contextlib.ExitStack) -> str:
    """Answer the stack's calls on a Unix socket (infra/moto/socket.py) at ``args.socket``,
    or, where that path cannot have one (over 107 bytes, a file system without sockets), in
    a temporary folder removed at the end. The socket's path."""
    from infra.moto.socket import SocketServer

    names = {"server_name": args.host, "server_port": args.port}

    def serving(path: str) -> str:
        # as many long polls at once as the HTTP server has threads for them
        server = SocketServer(path, app, **names, waiting_threads=args.threads)
        server.start()
        patches.callback(server.stop)
        return path

    try:
        return serving(args.socket)
    except OSError:
        folder = tempfile.mkdtemp(prefix="hopgraph-moto-")
        patches.callback(shutil.rmtree, folder, ignore_errors=True)
        return serving(os.path.join(folder, "moto.sock"))


def _patch_moto(patches: contextlib.ExitStack, persistence: Any, lock: threading.RLock) -> None:
    from infra.moto.dead_letters import dead_letters_marked
    from infra.moto.fair_queues import fair_queues
    from infra.moto.fidelity import serialize_dynamodb_writes, serialize_sqs
    from infra.moto.lookups import remembered_lookups
    from infra.moto.speedups import (
        cheaper_requests,
        faster_moto,
        faster_moto_server,
        transactions_undo_their_own_writes,
    )

    patches.enter_context(faster_moto())
    patches.enter_context(faster_moto_server())
    patches.enter_context(dead_letters_marked())
    patches.enter_context(fair_queues())  # before serialize_sqs: each pass, under its lock
    patches.enter_context(cheaper_requests())
    patches.enter_context(remembered_lookups())  # after cheaper_requests: it calls that delete
    patches.enter_context(transactions_undo_their_own_writes())  # under the lock below
    patches.enter_context(persistence.tracking())  # inside the locks below: see tracking()
    patches.enter_context(serialize_dynamodb_writes(lock))
    patches.enter_context(serialize_sqs(lock))


def _serve(commands: IO[str], persistence: Any) -> None:
    def stop_now(signum: int, frame: Any) -> None:
        raise SystemExit(0)  # through main's finally: the last changes are written

    def on_term(signum: int, frame: Any) -> None:
        # SIGTERM to the stack's process group (systemd, timeout, CI) reaches the parent too,
        # which stops this process in order ("stop", or its stdin's end) once its handlers
        # are done with moto; stopping first would fail their calls. Alone, it stops soon.
        signal.signal(signal.SIGTERM, stop_now)  # a second one stops at once
        signal.signal(signal.SIGALRM, stop_now)
        signal.alarm(TERM_GRACE_S)

    signal.signal(signal.SIGTERM, on_term)
    for line in commands:  # EOF: the parent is gone
        command = line.strip()
        if command == "restore":
            from infra.moto.persistence import RestoreFailed

            try:
                _say(f"restored {json.dumps(persistence.restore())}")
            except RestoreFailed as exc:  # the parent says it, and stops
                _say(f"error: {exc}; start with another --data, or --reset to empty it")
                return
        elif command == "stop":
            return


if __name__ == "__main__":
    sys.exit(main())
