"""moto's WSGI application served with kept-alive connections (waitress), for the local stack.

moto's own ``ThreadedMotoServer`` runs werkzeug's development server, which answers every
request with ``Connection: close``: each AWS call of the stack then opens a TCP connection
and moto starts a thread for it. Under benchmarks/local_load.py that was hundreds of new
connections a second (thousands of sockets in TIME-WAIT), and the kernel and thread work cost
more than most requests' own. waitress keeps HTTP/1.1 connections open, as AWS's endpoints
do, and answers from a fixed pool of threads; the application is moto's, with DynamoDB's
and SQS's JSON calls taken to their response classes without Flask (infra/moto/wsgi.py).

The pool must hold every request that can wait at once: each SQS poller of the stack keeps a
long-polling ReceiveMessage open in one thread, so ``threads`` is sized above the pollers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("hopgraph.local.moto")

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class MotoServer:
    """moto's application on ``host``:``port`` in a background thread."""

    def __init__(self, host: str, port: int, *, threads: int = 64, verbose: bool = False):
        self.host, self.port, self.threads, self.verbose = host, port, threads, verbose
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.app: WsgiApp | None = None
        """The application served, once started (infra/moto/socket.py serves it too)."""

    def start(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from waitress.server import create_server

        from infra.moto.wsgi import DirectApplication

        app: WsgiApp = DirectApplication(DomainDispatcherApplication(create_backend_app))
        if self.verbose:
            app = _access_log(app)
        else:  # waitress warns of a deep task queue: a busy moment, not an error
            logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        self.app = app
        self._server = create_server(
            app, host=self.host, port=self.port, threads=self.threads,
            connection_limit=1000,  # waitress's default of 100 is below the stack's pools
            asyncore_use_poll=True,  # select() cannot watch descriptors above 1023
            ident="moto",
        )  # fmt: skip
        self._thread = threading.Thread(target=self._server.run, name="moto-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        from waitress import wasyncore

        self._server.task_dispatcher.shutdown(cancel_pending=True, timeout=2)
        wasyncore.close_all(self._server._map)  # the loop ends when its map is empty
        if self._thread is not None:
            self._thread.join(timeout=5)


def _access_log(app: WsgiApp) -> WsgiApp:
    """One line per request, as werkzeug's server printed them, and its action (``--verbose``
    only)."""

    def logged(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        def start(status: str, headers: Any, *exc_info: Any) -> Any:
            method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
            action = environ.get("HTTP_X_AMZ_TARGET", "")  # which call: the path is "/"
            log.info('"%s %s HTTP/1.1" %s %s', method, path, status[:3], action)
            return start_response(status, headers, *exc_info)

        return app(environ, start)

    return logged
