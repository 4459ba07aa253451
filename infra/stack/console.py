"""What the local stack prints while it runs.

Quiet by default: the banner, one line per run event (started, completed, failed with its
reason, cancelled) and errors. The handlers' CloudWatch EMF metric lines, Powertools' info
lines, moto's and werkzeug's request logs, uvicorn's access log and third-party warnings are
what Lambda would send to CloudWatch, not what a person at a terminal wants to read; with
``--verbose`` every one of them is shown.

The run lines come from the service's own notifier: :class:`RunEventConsole` wraps it, so
they are the events WebSocket subscribers get, printed once each (a redelivered hop may
publish its run's end again).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
import warnings
from collections import OrderedDict
from typing import Any, TextIO

from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

from engine.ports import Audience, Notifier

_REMEMBERED = 10_000
"""Run events already printed, kept to drop repeats; a repeat comes seconds after the first."""
_OWN_MODULES = r"(?!engine|functions|infra)"
"""Warnings raised from any module but the product's are third-party ones."""


def run_line(event: dict[str, Any]) -> str | None:
    """The console line of one run event (None for a step event)."""
    if event.get("type") != "run":
        return None
    run_id, status = event.get("run_id"), event.get("status")
    steps = event.get("steps")
    if status == "running":
        return f"run {run_id} started"
    if status == "completed":
        return f"run {run_id} completed in {_steps(steps)}"
    if status in ("failed", "cancelled"):
        after = f" after {_steps(steps)}" if steps else ""
        return f"run {run_id} {status}{after}: {event.get('reason') or 'no reason given'}"
    return None


def _steps(count: Any) -> str:
    return f"{count} step" if count == 1 else f"{count} steps"


class RunEventConsole:
    """A :class:`~engine.ports.Notifier` that prints run events, then hands every event on
    to ``inner`` (the subscribers' notifier)."""

    def __init__(self, inner: Notifier, out: TextIO | None = None) -> None:
        self.inner = inner
        self._out = out
        self._printed: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = threading.Lock()

    def publish(
        self, run_id: str, events: list[dict[str, Any]], audience: Audience | None = None
    ) -> None:
        for event in events:
            line = run_line(event)
            if line is not None:
                self._print_once((run_id, str(event.get("status"))), line)
        self.inner.publish(run_id, events, audience)

    def _print_once(self, key: tuple[str, str], line: str) -> None:
        with self._lock:  # handlers publish from many threads; lines must not interleave
            if key in self._printed:
                return
            self._printed[key] = None
            if len(self._printed) > _REMEMBERED:
                self._printed.popitem(last=False)
            out = self._out or sys.stdout
            out.write(f"{time.strftime('%H:%M:%S')} {line}\n")
            out.flush()


def quiet_environment(verbose: bool) -> dict[str, str]:
    """The Powertools settings of the handlers: warnings only and no metric lines unless
    ``verbose`` (an explicit POWERTOOLS_LOG_LEVEL wins)."""
    return {
        "POWERTOOLS_LOG_LEVEL": os.environ.get(
            "POWERTOOLS_LOG_LEVEL", "INFO" if verbose else "WARNING"
        ),
        "POWERTOOLS_METRICS_DISABLED": "false" if verbose else "true",
    }


_TOKENS = re.compile(
    r"(?i)(?P<key>(?:token|access_token|id_token)=)[^&\s\"']+"
    r"|(?P<bearer>bearer\s+)[\w.~+/=-]+"
    r"|eyJ[\w-]*\.[\w-]*\.[\w-]*"
)


def redact_tokens(text: str) -> str:
    """``text`` with every bearer token, ``token=`` query value and JWT replaced."""
    return _TOKENS.sub(lambda m: f"{m.group('key') or m.group('bearer') or ''}<redacted>", text)


class RedactTokens(logging.Filter):
    """Rewrites a record whose message holds a token (uvicorn logs every WebSocket handshake
    with its query string, and a browser's handshake carries its JWT as ``?token=``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_tokens(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def redact_tokens_in_logs() -> None:
    """Install :class:`RedactTokens` on the handlers of the root logger and on the loggers
    that write request lines (a logger's filter misses its children's records; a handler's
    sees them all)."""
    targets: list[logging.Filterer] = [*logging.getLogger().handlers]
    targets += [logging.getLogger(name) for name in ("uvicorn.error", "uvicorn.access")]
    for target in targets:
        if not any(isinstance(f, RedactTokens) for f in target.filters):
            target.addFilter(RedactTokens())


def configure(verbose: bool) -> None:
    """Python logging and warnings for the stack's process (moto's has its own switch)."""
    if verbose:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        redact_tokens_in_logs()
        warnings.simplefilter("default")
        return
    # Errors still print: logging's last-resort handler shows WARNING and above.
    for noisy in ("botocore", "boto3", "urllib3", "moto", "werkzeug", "websockets"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=_OWN_MODULES)


def silence_metrics() -> None:
    """No EMF lines at all. POWERTOOLS_METRICS_DISABLED stops the flush at the end of each
    invocation, but not the one ``add_metric`` does when a metric reaches 100 values: here
    every handler shares one Metrics, so that is every 100 steps, and the values pile up until
    then. Quiet, the shared Metrics keeps nothing."""
    from functions.observability import metrics

    metrics.provider.add_metric = _ignore  # type: ignore[method-assign]


def _ignore(*args: Any, **kwargs: Any) -> None:
    return None


def install(service: Any) -> RunEventConsole:
    """Print ``service``'s run events from now on (it keeps its notifier behind)."""
    console = RunEventConsole(service.notifier)
    service.notifier = console
    return console


_RECORD_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class ReadableLines(LambdaPowertoolsFormatter):
    """The handlers' log lines on the console as sentences, not JSON: the time, the level
    when it is not an error's, the message, then the record's own keys
    (``20:17:28 malformed run request: no owner (message 7f3a...)``). A Powertools formatter
    still (the logger keeps its keys in it), whose lines are words."""

    def format(self, record: logging.LogRecord) -> str:
        extras = {
            k: v for k, v in record.__dict__.items()
            if k not in _RECORD_FIELDS and not k.startswith("_") and v not in (None, "")
        }  # fmt: skip
        reason = extras.pop("reason", None)
        line = record.getMessage() + (f": {reason}" if reason else "")
        if extras:
            line += " (" + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in extras.items()) + ")"
        if record.levelno < logging.ERROR:
            line = f"{record.levelname.lower()}: {line}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return f"{time.strftime('%H:%M:%S')} {line}"


def readable_logs(logger: Any) -> None:
    """The Powertools logger of the handlers prints :class:`ReadableLines` on the console
    (``--verbose`` keeps Lambda's JSON lines, as CloudWatch shows them)."""
    logger.registered_handler.setFormatter(ReadableLines())
