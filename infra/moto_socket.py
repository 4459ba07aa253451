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
WSGI application its HTTP endpoint serves, in a thread per connection. The request, the
application and the answer are those of the HTTP endpoint, which stays for everything else
(the CLI, a user's boto3 client, browsers): tests/functional/test_moto_local.py checks that
both answer the same. Hand-written: no library carries WSGI requests over a socket without
HTTP.

A frame is ``!II`` (the lengths of a JSON head and of a body), the head, the body. The
request's head is ``[method, path, headers]``, the answer's ``[status, headers]``.
"""

from __future__ import annotations

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
from typing import Any

log = logging.getLogger("hopgraph.local.moto")

_LENGTHS = struct.Struct("!II")
TIMEOUT_S = 90.0
"""How long a call waits for moto's answer: botocore's read timeout (60 s), and the longest
ReceiveMessage wait (20 s) on top."""
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class ConnectionLost(ConnectionError):
    """The moto process closed the socket, or is not there: it has stopped."""


def _send_frame(sock: socket.socket, head: Any, body: bytes) -> None:
    encoded = json.dumps(head, separators=(",", ":")).encode()
    sock.sendall(_LENGTHS.pack(len(encoded), len(body)) + encoded + body)


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
class SocketServer:
    """``app`` answering frames on the Unix socket ``path``, a thread per connection."""

    def __init__(self, path: str, app: WsgiApp, *, server_name: str, server_port: int) -> None:
        self.path, self.app = path, app
        self._names = {"SERVER_NAME": server_name, "SERVER_PORT": str(server_port)}
        self._listener: socket.socket | None = None
        self._closing = threading.Event()

    def start(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)  # left by a process that was killed
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.path)
        listener.listen(256)
        self._listener = listener
        threading.Thread(target=self._accept, name="moto-socket", daemon=True).start()

    def stop(self) -> None:
        self._closing.set()
        if self._listener is not None:
            self._listener.close()
        if os.path.exists(self.path):
            os.unlink(self.path)

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._closing.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:  # closed by stop()
                return
            name = "moto-socket-connection"
            threading.Thread(target=self._serve, args=(connection,), name=name, daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            try:
                while (frame := _read_frame(connection)) is not None:
                    (method, path, headers), body = frame
                    status, answer_headers, answer = self._answer(method, path, headers, body)
                    _send_frame(connection, [status, answer_headers], answer)
            except (ConnectionError, OSError):  # the client went away mid-frame
                return

    def _answer(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        started: list[Any] = []

        def start_response(status: str, response_headers: Any, exc_info: Any = None) -> Any:
            started[:] = [int(status[:3]), list(response_headers)]
            return lambda data: None  # the old write() callable: moto does not use it

        result = self.app(self._environ(method, path, headers, body), start_response)
        try:
            content = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
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
        from botocore.awsrequest import AWSResponse
        from botocore.exceptions import EndpointConnectionError

        try:
            status, headers, body = self._exchange(request)
        except OSError as exc:  # refused, reset, closed, timed out
            raise EndpointConnectionError(endpoint_url=request.url, error=exc) from exc
        return AWSResponse(request.url, status, dict(headers), _Body(body))

    def _exchange(self, request: Any) -> tuple[int, list[tuple[str, str]], bytes]:
        from urllib.parse import urlsplit

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
            _send_frame(sock, [request.method, path, headers], body)
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
