"""``hopgraph init`` and ``hopgraph dev``: the commands that need no API (a new project, the
local stack)."""

from __future__ import annotations

import argparse
import os

from infra.cli.parsing import LLM_HELP, TOOLKIT_HELP, Subcommands, subcommand
from infra.project.settings import Project, toolkit_modules


def add_dev(sub: Subcommands[argparse.ArgumentParser]) -> None:
    dev = subcommand(
        sub,
        "dev",
        "start the local stack",
        "Start the local stack: the HTTP API, the WebSocket API, moto (DynamoDB, SQS)\n"
        "and the queue pollers, on this machine. Ctrl-C stops it.",
        "  hopgraph dev\n  hopgraph dev --port 9000 --ws-port 9001 --dispatch lambda",
    )
    dev.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    dev.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("PORT", 8000)),
        help="HTTP API port (default: $PORT or 8000)",
    )
    dev.add_argument(
        "--ws-port",
        type=int,
        default=int(os.environ.get("WS_PORT", 8001)),
        help="WebSocket API port (default: $WS_PORT or 8001)",
    )
    dev.add_argument(
        "--dispatch",
        choices=["sqs", "lambda"],
        default="sqs",
        help="how steps are handed on: an SQS queue, or the worker invoking "
        "itself (default: %(default)s)",
    )
    dev.add_argument(
        "--moto-port",
        type=int,
        default=int(os.environ.get("MOTO_PORT", 8002)),
        help="moto's port, for boto3 clients (default: $MOTO_PORT or 8002)",
    )
    dev.add_argument(
        "--data",
        default=".hopgraph",
        help="folder that keeps graphs, runs and queued steps across restarts "
        "(default: %(default)s)",
    )
    dev.add_argument("--reset", action="store_true", help="start with no data")
    dev.add_argument(
        "--auth",
        choices=["dev", "strict"],
        default="dev",
        help="dev: a request without a token acts as the user 'dev'; strict: it is "
        "refused, as on AWS. Bad tokens are refused in both (default: %(default)s)",
    )
    dev.add_argument("--verbose", action="store_true", help="print every log line")
    dev.add_argument("--toolkit", action="append", default=[], metavar="MODULE", help=TOOLKIT_HELP)
    dev.add_argument("--llm", metavar="PROVIDER", help=LLM_HELP)


def add_init(sub: Subcommands[argparse.ArgumentParser]) -> None:
    init = subcommand(
        sub,
        "init",
        "start a project of your own",
        "Write a new project into DIR: a toolkit with one tool and its test, a graph\n"
        "that uses it (JSON and Python), pyproject.toml with its [tool.hopgraph]\n"
        "settings, and template.yaml + samconfig.toml that deploy it with the engine.",
        "  hopgraph init my-agent\n  hopgraph init . --name review_bot",
    )
    init.add_argument("dir", metavar="DIR", help="the project's folder (new, or empty)")
    init.add_argument(
        "--name", help="the project's Python package (default: DIR's name, as an identifier)"
    )


def cmd_dev(args: argparse.Namespace, project: Project | None) -> int:
    from pathlib import Path

    from infra.stack.local_stack import StackConfig, serve

    stack = {k: getattr(args, k) for k in ("host", "port", "ws_port", "moto_port")}
    return serve(
        StackConfig(
            **stack,
            dispatch=args.dispatch,
            data=Path(args.data),
            reset=args.reset,
            verbose=args.verbose,
            auth=args.auth,
            toolkits=",".join(
                toolkit_modules(project, args.toolkit, os.environ.get("HOPGRAPH_TOOLKITS"))
            ),
        )
    )
