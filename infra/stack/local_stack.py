"""``make dev`` / ``hopgraph dev``: the whole of hopgraph on a laptop, in two processes.

    uvicorn (FastAPI app)  --- HTTP :8000 ---------------------------.
    local WebSocket gateway --- WS :8001 (+ @connections API) ------+--> the same handlers
    SQS event sources: StepQueue -> worker, RunRequestsQueue -> starter  as on Lambda
    local Lambda Invoke endpoint (self-invoke dispatch mode)         |
    moto server, its own process, :8002: DynamoDB table and SQS <----'
        queues created from template.yaml, kept in the data folder (.hopgraph/)

The data folder keeps graphs, runs, steps and the hops in flight across a clean stop and a
``kill -9`` (infra/moto/persistence.py); ``--reset`` starts empty.

Nothing here is a second implementation: the handlers, adapters and boto3 clients are the
ones deployed to AWS; only the endpoints they reach differ (``AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.template import reader as template

STACK_NAME = "hopgraph-local"
REGION = "us-east-1"
WORKER_FUNCTION = f"{STACK_NAME}-worker"
WEBSOCKET_FUNCTION = f"{STACK_NAME}-websocket"


class StackError(Exception):
    """The stack cannot start; the message is one line a person can act on."""


class PortInUse(StackError):
    """A port the stack needs is taken; the message says which and how to choose another."""


@dataclass
class StackConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    ws_port: int = 8001
    moto_port: int = 0
    """0: any free port (``hopgraph dev`` keeps one port, so boto3 clients keep working)."""
    data: Path = Path(".hopgraph")
    """Where the stack keeps its tables and queues between runs."""
    reset: bool = False
    """Start with empty tables and queues (the data folder's files are deleted)."""
    verbose: bool = False
    dispatch: str = "sqs"
    workers: int = 16
    """Concurrent pollers of the step queue, as Lambda's concurrent invocations of the worker
    (Lambda would scale further; the other queues get a quarter: their traffic is a run's
    start, not each of its steps)."""
    toolkits: str = "engine.toolkits.code_review,engine.toolkits.basics"
    failed_visibility: int | None = 2
    """Seconds before a failed message is retried (SQS would wait its visibility timeout)."""
    template_path: Path | None = None
    """The template the stack is built from (None: the repo's template.yaml)."""
    auth: str = "dev"
    """``dev``: a request without a token acts as the dev user; ``strict``: refused, as on
    AWS (infra/stack/local_auth.py)."""


LOOPBACK = "127.0.0.1"
"""Where moto listens whatever ``--host`` says: it answers any caller with no credentials."""


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


def check_host(config: StackConfig) -> str | None:
    """Refuse an open stack on a network; the warning for a strict one on a network."""
    if is_loopback(config.host):
        return None
    if config.auth != "strict":
        raise StackError(
            f"--host {config.host} serves the stack beyond this machine, and --auth "
            f"{config.auth} lets any request in as the user 'dev': add --auth strict"
        )
    return (
        f"warning: --host {config.host}: the HTTP API and the WebSocket API answer other "
        "machines (every request needs a token); moto and @connections stay on 127.0.0.1"
    )


def ensure_free(host: str, port: int, what: str, option: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                message = f"port {port} ({what}) is already in use on {host}"
                raise PortInUse(f"{message}; choose another with {option}") from None
            raise


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclass
class LocalStack:
    """Starts and stops every part but the HTTP server, which :func:`serve` runs in front."""

    config: StackConfig
    moto_endpoint: str = ""
    ws_url: str = ""
    queue_urls: dict[str, str] = field(default_factory=dict)
    restored: dict[str, int] = field(default_factory=dict)
    """What the data folder gave back: items, messages, and those skipped."""
    template_doc: dict[str, Any] = field(default_factory=dict)
    warning: str | None = None
    """What the banner says first: the stack answers beyond this machine."""
    auth: Any = None
    """The token issuer and mode (infra/stack/local_auth.py:LocalAuth), set by start()."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _parts: list[Any] = field(default_factory=list)

    def start(self) -> None:
        cfg = self.config
        self.warning = check_host(cfg)
        ensure_free(cfg.host, cfg.port, "HTTP API", "--port or PORT=")
        ensure_free(cfg.host, cfg.ws_port, "WebSocket", "--ws-port or WS_PORT=")
        if cfg.moto_port:
            ensure_free(LOOPBACK, cfg.moto_port, "moto", "--moto-port or MOTO_PORT=")
        self.template_doc = template.load_template(cfg.template_path)
        self._start_auth()
        self._start_moto()
        self._create_resources()
        self.restored = self._restore()
        self._start_gateway()
        self._start_lambda_endpoint()
        self._configure_environment()
        self._start_event_sources()
        self._start_schedules()

    # -- parts -----------------------------------------------------------------------------
    def _start_auth(self) -> None:
        """The token issuer (its key in the data folder) for the URL the API is served at."""
        from infra.stack.local_auth import LocalAuth

        cfg = self.config
        issuer_url = f"http://{cfg.host}:{cfg.port}"
        try:
            self.auth = LocalAuth.in_folder(cfg.data.resolve(), issuer_url, cfg.auth)
        except (OSError, ValueError) as exc:
            raise StackError(f"cannot set up the token issuer: {exc}") from None

    def _start_moto(self) -> None:
        from functions.aws.dynamodb_items import connection_key
        from infra.moto.process import MotoProcess, MotoProcessFailed

        cfg = self.config
        self._moto = MotoProcess(
            LOOPBACK,
            cfg.moto_port or free_port(LOOPBACK),
            cfg.data.resolve(),
            reset=cfg.reset,
            redelivery_s=43200 if cfg.failed_visibility is None else cfg.failed_visibility,
            # Connections die with the gateway, as API Gateway's with their clients.
            forget_prefix=connection_key("")["PK"]["S"],
            verbose=cfg.verbose,
            threads=cfg.workers * 2 + 32,  # long polls of every poller, and the calls beside
            local_socket=True,  # the handlers' calls skip HTTP (infra/moto/socket.py)
        )
        self._parts.append(self._moto)  # first started, last stopped: it writes the data
        try:
            self._moto.start()
        except MotoProcessFailed as exc:
            raise StackError(str(exc).removeprefix("error: ")) from None
        self.moto_endpoint = self._moto.endpoint
        os.environ.update(
            AWS_ENDPOINT_URL=self.moto_endpoint,
            AWS_ACCESS_KEY_ID="local",
            AWS_SECRET_ACCESS_KEY="local",
            AWS_DEFAULT_REGION=REGION,
            AWS_REGION=REGION,
        )
        os.environ.pop("AWS_PROFILE", None)

    def _restore(self) -> dict[str, int]:
        from infra.moto.process import MotoProcessFailed

        try:
            return self._moto.restore()
        except MotoProcessFailed as exc:
            raise StackError(str(exc).removeprefix("error: ")) from None

    def _create_resources(self) -> None:
        import boto3

        dynamodb = boto3.client("dynamodb", endpoint_url=self.moto_endpoint, region_name=REGION)
        template.create_table(dynamodb, f"{STACK_NAME}-table", self.template_doc)
        sqs = boto3.client("sqs", endpoint_url=self.moto_endpoint, region_name=REGION)
        names = {q: f"{STACK_NAME}-{q}" for q in template.queue_definitions(self.template_doc)}
        self.queue_urls = template.create_queues(sqs, names, self.template_doc)
        s3 = boto3.client("s3", endpoint_url=self.moto_endpoint, region_name=REGION)
        buckets = {b: f"{STACK_NAME}-{b.lower()}" for b in template.bucket_ids(self.template_doc)}
        self.buckets = template.create_buckets(s3, buckets, self.template_doc)

    def _start_gateway(self) -> None:
        from infra.gateway.ws_gateway import LocalWebSocketGateway

        gateway = LocalWebSocketGateway(
            host=self.config.host,
            port=self.config.ws_port,
            authorizer=self.auth.connect_authorizer(self.template_doc),
        )
        gateway.run_in_thread()
        self._parts.append(_Closing(gateway))
        self.ws_url = f"ws://{self.config.host}:{self.config.ws_port}"
        os.environ["HOPGRAPH_WS_ENDPOINT"] = gateway.management_endpoint

    def _start_lambda_endpoint(self) -> None:
        """Invoke: the worker's self-invocations (``--dispatch lambda``), the WebSocket
        function's own (``$connect``'s replay, functions/websocket/routes.py), and the
        dead-letter consumer's redrive of parked run requests (functions/deadletter)."""
        import boto3

        from functions.deadletter.handler import handler as dead_letter_handler
        from functions.websocket.handler import handler as websocket_handler
        from functions.worker.handler import handler as worker_handler
        from infra.stack.lambda_endpoint import LocalLambdaEndpoint, register_from_template

        sqs = boto3.client("sqs", endpoint_url=self.moto_endpoint, region_name=REGION)
        endpoint = LocalLambdaEndpoint(LOOPBACK, 0, workers=self.config.workers * 2)
        functions = [
            ("WebSocketFunction", WEBSOCKET_FUNCTION, websocket_handler),
            ("DeadLetterFunction", f"{STACK_NAME}-deadletter", dead_letter_handler),
        ]
        if self.config.dispatch == "lambda":
            functions.append(("WorkerFunction", WORKER_FUNCTION, worker_handler))
        for function_id, name, handler in functions:
            register_from_template(
                endpoint, function_id, name, handler,
                sqs=sqs, queue_urls=self.queue_urls, template_doc=self.template_doc,
            )  # fmt: skip
        endpoint.start()
        self._parts.append(endpoint)
        os.environ["AWS_ENDPOINT_URL_LAMBDA"] = endpoint.url

    def _configure_environment(self) -> None:
        from functions import runtime
        from functions.aws import clients
        from functions.observability import logger
        from functions.settings import get_settings
        from infra.stack import console, local_clients

        os.environ.update(
            HOPGRAPH_TABLE=f"{STACK_NAME}-table",
            HOPGRAPH_STEP_QUEUE_URL=self.queue_urls["StepQueue"],
            HOPGRAPH_RUN_REQUESTS_DLQ_URL=self.queue_urls["RunRequestsDLQ"],
            HOPGRAPH_RUN_REQUESTS_QUEUE_URL=self.queue_urls["RunRequestsQueue"],
            HOPGRAPH_DISPATCH=self.config.dispatch,
            HOPGRAPH_WORKER_FUNCTION=_qualified(WORKER_FUNCTION, self.template_doc),
            HOPGRAPH_WS_URL=self.ws_url,
            HOPGRAPH_WEBSOCKET_FUNCTION=WEBSOCKET_FUNCTION,
            HOPGRAPH_TOOLKITS=self.config.toolkits,
            HOPGRAPH_BUCKET=self.buckets.get("ValuesBucket", ""),
            HOPGRAPH_STATE_LIMIT_BYTES=str(8 * 1024 * 1024),
            HOPGRAPH_RETENTION_DAYS=str(_retention_days(self.template_doc)),
            POWERTOOLS_SERVICE_NAME="hopgraph",
            POWERTOOLS_METRICS_NAMESPACE="Hopgraph",
            POWERTOOLS_TRACE_DISABLED="true",
            **console.quiet_environment(self.config.verbose),
            **self.auth.environment(),
        )
        get_settings.cache_clear()
        clients.reset()
        # every thread that calls at once keeps its connection: pollers, API, Invoke endpoint
        local_clients.install_pooled(self.config.workers * 4 + 40, REGION, self._moto.socket_path)
        runtime.install(None)
        logger.setLevel(os.environ["POWERTOOLS_LOG_LEVEL"])  # if it was built before
        console.install(runtime.service())  # one line per run event on the console
        if not self.config.verbose:
            console.silence_metrics()
            console.readable_logs(logger)

    def _start_event_sources(self) -> None:

        from functions.aws import clients
        from functions.deadletter.handler import handler as dead_letter_handler
        from functions.starter.handler import handler as starter_handler
        from functions.worker.handler import handler as worker_handler
        from infra.stack import local_clients
        from infra.stack.event_source import SqsEventSource
        from infra.stack.invocations import instrument

        # The handlers' AWS calls carry their invocation's trace header and stop when it has
        # timed out, as in Lambda (infra/stack/invocations.py).
        instrument(*(clients.client(s) for s in local_clients.SERVICES))
        sqs = local_clients.pooled(  # a connection per poller
            "sqs", self.config.workers * 2, REGION, self._moto.socket_path
        )
        quarter = max(1, self.config.workers // 4)
        for function_id, name, handler, pollers, queue in (
            ("WorkerFunction", WORKER_FUNCTION, worker_handler, self.config.workers, None),
            ("StarterFunction", f"{STACK_NAME}-starter", starter_handler, quarter, None),
            ("DeadLetterFunction", f"{STACK_NAME}-deadletter", dead_letter_handler, quarter,
             "StepDLQ"),
            # The same consumer keeps parked run requests (its second event)
            ("DeadLetterFunction", f"{STACK_NAME}-deadletter", dead_letter_handler, 1,
             "RunRequestsDLQ"),
        ):  # fmt: skip
            source = SqsEventSource.from_template(
                sqs, self.queue_urls, handler, function_id,
                function_name=name,
                template_doc=self.template_doc,
                queue=queue,
                failed_visibility=self.config.failed_visibility,
                wait_time_seconds=1,  # long polling, as Lambda's pollers do: no busy loop
            )  # fmt: skip
            thread = threading.Thread(
                target=source.run,
                args=(self._stop, pollers),
                name=f"event-source-{function_id}-{queue or 'queue'}",
                daemon=True,
            )
            thread.start()
            self._parts.append(thread)

    def _start_schedules(self) -> None:
        """The template's scheduled functions (the sweeper), on their rates."""
        from functions.sweeper.handler import handler as sweeper_handler
        from infra.stack.invocations import FunctionSettings
        from infra.stack.schedule import ScheduleSource, scheduled_functions

        handlers = {"SweeperFunction": sweeper_handler}
        definitions = template.function_definitions(self.template_doc)
        for function_id, period in scheduled_functions(self.template_doc).items():
            settings = FunctionSettings.from_template(
                f"{STACK_NAME}-{function_id}", definitions[function_id]
            )
            source = ScheduleSource(handlers[function_id], settings, period)
            thread = threading.Thread(target=source.run, args=(self._stop,),
                                      name=f"schedule-{function_id}", daemon=True)  # fmt: skip
            thread.start()
            self._parts.append(thread)

    def resumed_runs(self, limit: int = 20) -> list[str]:
        """The runs the data folder gave back still running, the newest ``limit`` (then
        "more"): each goes on from its last committed step."""
        if not self.restored.get("items"):
            return []
        from functions import runtime

        try:
            page = runtime.store().list_runs(status="running", limit=limit + 1)
        except Exception:  # a listing is a courtesy: the stack serves without it
            return []
        ids = [run.run_id for run in page.items]
        return ids[:limit] + (["more"] if len(ids) > limit or page.cursor else [])

    def stop(self) -> None:
        self._stop.set()
        for part in reversed(self._parts):
            stopper = getattr(part, "stop", None) or getattr(part, "join", None)
            if stopper is not None:
                with contextlib.suppress(Exception):
                    stopper(timeout=5) if isinstance(part, threading.Thread) else stopper()


def _qualified(name: str, template_doc: template.Template) -> str:
    """The worker's name as the deployment's self-invocation names it: through its alias."""
    alias = template.function_alias(template_doc)
    return name if alias is None else f"{name}:{alias}"


@dataclass
class _Closing:
    """Adapts a part whose shutdown method is ``close`` to the stack's ``stop``."""

    part: Any

    def stop(self) -> None:
        self.part.close()


def banner(stack: LocalStack) -> str:
    cfg = stack.config
    return "\n".join(
        [
            "hopgraph local stack is up",
            f"  HTTP API   http://{cfg.host}:{cfg.port}   (docs: http://{cfg.host}:{cfg.port}/docs)",
            f"  dashboard  http://{cfg.host}:{cfg.port}/ui",
            f"  WebSocket  {stack.ws_url}   (also ws://{cfg.host}:{cfg.port}/ws/{{run_id}})",
            f"  moto       {stack.moto_endpoint}   (DynamoDB and SQS; AWS_ENDPOINT_URL for boto3)",
            f"  data       {cfg.data.resolve()}   ({_restored(stack.restored)})",
            f"  run requests queue  {stack.queue_urls.get('RunRequestsQueue', '-')}",
            f"  dispatch   {cfg.dispatch}",
            f"  auth       {stack.auth.describe()}",
            f"  issuer     {stack.auth.issuer.issuer}   (hopgraph login --user NAME for a token)",
            f"Try: {_api_setting(cfg)}hopgraph run examples/code_review.json "
            "--set code=@examples/sample_code.py -f",
            "Ctrl-C stops everything.",
        ]
    )


def _api_setting(cfg: StackConfig) -> str:
    """What a command needs to find this stack: nothing on the default address; else its
    API's URL (the API names its WebSocket URL itself)."""
    if (cfg.host, cfg.port) == ("127.0.0.1", 8000):
        return ""
    return f"HOPGRAPH_API=http://{cfg.host}:{cfg.port} "


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _restored(counts: dict[str, int]) -> str:
    if not counts.get("items") and not counts.get("messages"):
        return "empty"
    items, messages = plural(counts["items"], "item"), plural(counts["messages"], "message")
    return f"{items} and {messages} kept; --reset empties it"


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def serve(config: StackConfig) -> int:
    """Run the stack until Ctrl-C; 1 with a one-line error if it cannot start."""
    import uvicorn

    from infra.stack import console

    host, port = config.host, config.port
    console.configure(config.verbose)
    stack = LocalStack(config)
    try:
        stack.start()
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        stack.stop()
        return 1
    try:
        from functions.api.app import create_app

        if stack.warning:
            print(stack.warning, file=sys.stderr, flush=True)
        print(banner(stack), flush=True)
        resumed = stack.resumed_runs()
        if resumed:  # what a restart took up, so a kill's effect on each run can be looked at
            print(f"resumed {plural(len(resumed), 'run')}: {', '.join(resumed)}", flush=True)
        from infra.gateway.ws_compat import with_compat_websockets

        # /ws and /ws/{run_id} on the HTTP port too, for clients of earlier engines; HTTP
        # requests pass the JWT authorizer as API Gateway's would (the issuer's routes first)
        api = stack.auth.http_app(create_app(), template.open_http_routes(stack.template_doc))
        app = with_compat_websockets(api, stack.ws_url)
        log_level = "info" if config.verbose else "warning"  # info: uvicorn's access log
        # SIGTERM (systemd, timeout, CI runners) stops the stack as Ctrl-C does: uvicorn
        # shuts down on either, then raises the signal again, here an interrupt for both.
        signal.signal(signal.SIGTERM, _interrupt)
        with contextlib.suppress(KeyboardInterrupt):
            uvicorn.run(app, host=host, port=port, log_level=log_level, ws="websockets-sansio")
    finally:
        stack.stop()
    print("hopgraph local stack stopped", flush=True)
    return 0


@contextlib.contextmanager
def running(config: StackConfig) -> Iterator[LocalStack]:
    stack = LocalStack(config)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def _retention_days(template_doc: dict[str, Any]) -> int:
    """The template's retention of log items (``HOPGRAPH_RETENTION_DAYS``, ``RetentionDays``
    at its default): written on the local items as on AWS. moto keeps an expired item (it
    has no TTL process), and so does the local stack: DynamoDB deletes expired items in the
    background, within days, and reads return them until then; nothing here relies on the
    deletion. README "What is kept, for how long"."""
    from infra.template.reader import default_value

    env = template_doc["Globals"]["Function"]["Environment"]["Variables"]
    return int(default_value(template_doc, env["HOPGRAPH_RETENTION_DAYS"]))
