"""The stack's own AWS calls to its moto process over a Unix socket, without HTTP.

Every step of a run is about three calls to moto (a query, the commit, a share of a send,
a receive and a delete). Over HTTP each one costs both processes far more than moto's work
on it: in the handlers' process urllib3 and ``http.client`` build and parse HTTP/1.1 (a third
of that process's time under benchmarks/local_load.py), and in moto's process waitress
parses it again and hands every request and response between its poll loop and a worker
thread (about a third of moto's). Neither side needs HTTP to tell the other a request: botocore
has already made it (method, path, headers, body, exactly the bytes it would send to AWS),
and moto answers it with a WSGI application.

So the local stack's clients send botocore's prepared request as one frame over a Unix
socket (botocore's ``before-send`` event, which moto's in-process mock uses the same way,
returns the answer in place of the HTTP send), and the moto process hands each frame to the
WSGI application its HTTP endpoint serves, one at a time (:class:`SocketServer` says why).
The request, the application and the answer are those of the HTTP endpoint, which stays for
everything else (the CLI, a user's boto3 client, browsers): tests/functional/test_moto_local.py
checks that both answer the same. Hand-written: no library carries WSGI requests over a
socket without HTTP.

A frame is ``!II`` (the lengths of a JSON head and of a body), the head, the body. The
request's head is ``[method, path, headers]``, the answer's ``[status, headers]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import queue
import socket
import struct
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from botocore.awsrequest import AWSResponse
from botocore.exceptions import EndpointConnectionError

log = logging.getLogger("hopgraph.local.moto")

_LENGTHS = struct.Struct("!II")
TIMEOUT_S = 90.0
"""How long a call waits for moto's answer: botocore's read timeout (60 s), and the longest
ReceiveMessage wait (20 s) on top."""
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class ConnectionLost(ConnectionError):
    """The moto process closed the socket, or is not there: it has stopped."""


def _frame(head: Any, body: bytes) -> bytes:
    encoded = json.dumps(head, separators=(",", ":")).encode()
    return _LENGTHS.pack(len(encoded), len(body)) + encoded + body


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise ConnectionLost("the moto process closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_frame(sock: socket.socket) -> tuple[Any, bytes] | None:
    """The next frame, or None when the peer closed the connection between frames."""
    first = sock.recv(_LENGTHS.size)
    if not first:
        return None
    if len(first) < _LENGTHS.size:
        first += _read_exactly(sock, _LENGTHS.size - len(first))
    head_size, body_size = _LENGTHS.unpack(first)
    payload = _read_exactly(sock, head_size + body_size)
    return json.loads(payload[:head_size]), payload[head_size:]


# ---------------------------------------------------------------------------- moto's side
_WAITING_CALLS = frozenset({"AmazonSQS.ReceiveMessage"})
"""Calls that can wait (a long poll): answered on threads, never on the loop."""


class SocketServer:
    """``app`` answering frames on the Unix socket ``path``: one call at a time on an
    asyncio loop, long polls on threads of their own.

    One thread does all the work because a thread per connection made moto's process a
    convoy: py-spy dumps under benchmarks/local_load.py showed 30 to 50 requests waiting for
    the lock that keeps moto's writes atomic (infra/moto/fidelity.py), whose holder also
    needs the GIL, while the process held the GIL only two thirds of the time. Calls answered
    one after another wait for no lock and hand the GIL to no one. A ReceiveMessage may wait
    up to its WaitTimeSeconds for a message, so it takes a thread.
    """

    def __init__(
        self, path: str, app: WsgiApp, *, server_name: str, server_port: int,
        waiting_threads: int = 64,
    ) -> None:  # fmt: skip
        self.path, self.app = path, app
        self._names = {"SERVER_NAME": server_name, "SERVER_PORT": str(server_port)}
        self._waiting = ThreadPoolExecutor(waiting_threads, thread_name_prefix="moto-long-poll")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)  # left by a process that was killed
        loop = asyncio.new_event_loop()
        try:
            server = loop.run_until_complete(
                asyncio.start_unix_server(self._serve, path=self.path, backlog=256)
            )
        except BaseException:  # no socket here (infra/moto/process.py tries another place)
            loop.close()
            raise
        self._loop, self._server = loop, server
        self._thread = threading.Thread(target=loop.run_forever, name="moto-socket", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and self._thread is not None:
            with contextlib.suppress(Exception):  # a stop must not fail: the data is written
                asyncio.run_coroutine_threadsafe(self._close(), loop).result(timeout=5)
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout=5)
            if not self._thread.is_alive():
                loop.close()
        self._waiting.shutdown(wait=False, cancel_futures=True)
        if os.path.exists(self.path):
            os.unlink(self.path)

    async def _close(self) -> None:
        """Stop listening, and end every connection's task (on the loop)."""
        if self._server is not None:
            self._server.close()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    head_size, body_size = _LENGTHS.unpack(await reader.readexactly(_LENGTHS.size))
                    payload = await reader.readexactly(head_size + body_size)
                except asyncio.IncompleteReadError:  # closed, between frames or in one
                    return
                (method, path, headers), body = json.loads(payload[:head_size]), payload[head_size:]
                request = (method, path, headers, body)
                if headers.get("X-Amz-Target") in _WAITING_CALLS:
                    answer = await loop.run_in_executor(self._waiting, self._answer, *request)
                else:
                    answer = self._answer(*request)
                status, answer_headers, content = answer
                writer.write(_frame([status, answer_headers], content))
                await writer.drain()
        except (ConnectionError, OSError):  # the client went away
            return
        except asyncio.CancelledError:  # stop(): end quietly, not cancelled (Python 3.11's
            return  # streams log a traceback for a connection task that ends cancelled)
        finally:
            writer.close()

    def _answer(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        started: list[Any] = []

        def start_response(status: str, response_headers: Any, exc_info: Any = None) -> Any:
            started[:] = [int(status[:3]), list(response_headers)]
            return lambda data: None  # the old write() callable: moto does not use it

        try:
            result = self.app(self._environ(method, path, headers, body), start_response)
            try:
                content = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except Exception:  # a fault of moto's: a 500, as its HTTP server (waitress) answers
            log.exception("moto failed to answer %s", headers.get("X-Amz-Target", path))
            return 500, [("Content-Type", "text/plain")], b"Internal Server Error"
        return started[0], started[1], content

    def _environ(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> dict[str, Any]:
        """The WSGI environ waitress builds for the same request (PEP 3333)."""
        path_info, _, query = path.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "SCRIPT_NAME": "",
            "PATH_INFO": path_info,
            "QUERY_STRING": query,
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            **self._names,
        }
        for name, value in headers.items():
            key = name.upper().replace("-", "_")
            if key == "CONTENT_TYPE":
                environ["CONTENT_TYPE"] = value
            elif key != "CONTENT_LENGTH":
                environ[f"HTTP_{key}"] = value
        return environ


# ---------------------------------------------------------------------------- the stack's side
class _Body:
    """What botocore reads an answer's body from (``AWSResponse.raw``)."""

    def __init__(self, content: bytes) -> None:
        self._content = content

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._content


class SocketTransport:
    """botocore's ``before-send`` handler that sends a client's requests over the socket.

    Connections are pooled: a handler thread takes one for a call and gives it back. A
    connection that fails is dropped, and the error reaches botocore as a connection error,
    which its retry rules treat as they treat a refused HTTP connection.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._idle: queue.SimpleQueue[socket.socket] = queue.SimpleQueue()

    def install(self, client: Any) -> None:
        client.meta.events.register_first("before-send", self.send)

    def send(self, request: Any, **_: Any) -> Any:
        try:
            status, headers, body = self._exchange(request)
        except OSError as exc:  # refused, reset, closed, timed out
            raise EndpointConnectionError(endpoint_url=request.url, error=exc) from exc
        # botocore reads the headers as a mapping only; building its HTTPHeaders costs a parse
        return AWSResponse(request.url, status, dict(headers), _Body(body))  # type: ignore[arg-type]

    def _exchange(self, request: Any) -> tuple[int, list[tuple[str, str]], bytes]:
        url = urlsplit(request.url)
        path = url.path or "/"
        if url.query:
            path = f"{path}?{url.query}"
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        elif not isinstance(body, bytes):  # a file-like body: read it whole
            body = body.read()
        headers = {name: _text(value) for name, value in request.headers.items()}
        headers.setdefault("Host", url.netloc)
        sock = self._connection()
        try:
            sock.sendall(_frame([request.method, path, headers], body))
            frame = _read_frame(sock)
            if frame is None:
                raise ConnectionLost("the moto process closed the connection")
        except BaseException:
            sock.close()
            raise
        self._idle.put(sock)
        (status, answer_headers), answer = frame
        return status, answer_headers, answer

    def _connection(self) -> socket.socket:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(TIMEOUT_S)
            try:
                sock.connect(self.path)
            except OSError:
                sock.close()
                raise
            return sock


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
