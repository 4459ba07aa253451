"""``hopgraph``: the command line.

A client of the HTTP and WebSocket APIs (``--api``/``HOPGRAPH_API``, ``--ws``/``HOPGRAPH_WS``),
the in-process runner (``run FILE --local``), and ``dev``, which starts the local stack.
Exit codes: 0 success (a completed run), 1 a run that did not complete, 2 a usage or API error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Column, Table

from infra.client import ApiError, HopgraphClient, follow_events
from infra.progress import RunProgress

DEFAULT_API = "http://127.0.0.1:8000"
DEFAULT_WS = "ws://127.0.0.1:8001"
DEFAULT_TOOLKITS = "engine.toolkits.code_review"


class UsageError(Exception):
    """A mistake in the command line's arguments; printed without a traceback."""


# -- argument parsing ----------------------------------------------------------------------
def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--api", default=argparse.SUPPRESS, help="HTTP API base URL")
    common.add_argument("--ws", default=argparse.SUPPRESS, help="WebSocket API URL")
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON for scripts"
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(prog="hopgraph", description=__doc__.split("\n")[0])
    parser.add_argument("--api", default=os.environ.get("HOPGRAPH_API", DEFAULT_API))
    parser.add_argument("--ws", default=os.environ.get("HOPGRAPH_WS", DEFAULT_WS))
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = sub.add_parser("dev", help="start the local stack", parents=[common])
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
    dev.add_argument("--ws-port", type=int, default=int(os.environ.get("WS_PORT", 8001)))
    dev.add_argument("--dispatch", choices=["sqs", "lambda"], default="sqs")

    graphs = sub.add_parser("graphs", help="create, list and show graphs").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    graphs.add_parser(
        "create", help="create a graph from a JSON file", parents=[common]
    ).add_argument("file")
    graphs.add_parser("list", help="list graphs", parents=[common])
    show = graphs.add_parser("show", help="show a graph", parents=[common])
    show.add_argument("graph_id")
    show.add_argument("--mermaid", action="store_true", help="print Mermaid text")

    run = sub.add_parser(
        "run", help="start a run (or run in-process with --local)", parents=[common]
    )
    run.add_argument("target", help="a graph id, or a graph JSON file")
    run.add_argument("--input", default="{}", help="initial state: JSON, or @FILE of JSON")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set one state key; VALUE is JSON or text, @FILE reads a file's text",
    )
    run.add_argument("--follow", "-f", action="store_true", help="stream the steps live")
    run.add_argument("--local", action="store_true", help="run in this process, no stack")
    run.add_argument("--max-steps", type=int)
    run.add_argument("--idempotency-key")
    run.add_argument("--toolkit", action="append", help="toolkit module (with --local)")
    run.add_argument("--timeout", type=float, default=300.0, help="seconds to wait per event")

    runs = sub.add_parser("runs", help="list, show, log and cancel runs").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    listing = runs.add_parser("list", help="list runs", parents=[common])
    listing.add_argument("--graph-id")
    listing.add_argument("--status", choices=["running", "completed", "failed", "cancelled"])
    for action, text in (
        ("show", "a run's status and state"),
        ("logs", "a run's steps"),
        ("cancel", "cancel a running run"),
    ):
        runs.add_parser(action, help=text, parents=[common]).add_argument("run_id")

    sub.add_parser("tools", help="list the registered tools", parents=[common])
    return parser


# -- helpers -------------------------------------------------------------------------------
def _read_json_arg(text: str, what: str) -> Any:
    if text.startswith("@"):
        text = _read_file(text[1:])
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} is not valid JSON: {exc}") from None


def _read_file(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def _initial_state(args: argparse.Namespace) -> dict[str, Any]:
    state = _read_json_arg(args.input, "--input")
    if not isinstance(state, dict):
        raise UsageError("--input must be a JSON object")
    for assignment in args.set:
        key, sep, value = assignment.partition("=")
        if not sep or not key:
            raise UsageError(f"--set expects KEY=VALUE, got {assignment!r}")
        if value.startswith("@"):
            state[key] = _read_file(value[1:])
        else:
            try:
                state[key] = json.loads(value)
            except json.JSONDecodeError:
                state[key] = value
    return state


class Output:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.console = Console()

    def data(self, value: Any) -> None:
        print(json.dumps(value, indent=2, default=str))

    def table(self, rows: list[dict[str, Any]], columns: list[str]) -> None:
        if self.as_json:
            self.data(rows)
            return
        # fold, never truncate: ids are copied from these tables
        table = Table(*(Column(c, overflow="fold") for c in columns))
        for row in rows:
            table.add_row(*(_cell(row.get(c)) for c in columns))
        self.console.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return value if isinstance(value, str) else json.dumps(value, default=str)


# -- commands ------------------------------------------------------------------------------
def cmd_graphs(args: argparse.Namespace, out: Output, client: HopgraphClient) -> int:
    if args.action == "create":
        created = client.create_graph(_read_json_arg("@" + args.file, args.file))
        if out.as_json:
            out.data(created)
        else:
            out.console.print(f"created graph [bold]{created['graph_id']}[/]", highlight=False)
    elif args.action == "list":
        out.table(client.list_graphs(), ["graph_id", "name", "created_at"])
    elif args.mermaid:
        print(client.mermaid(args.graph_id), end="")
    else:
        out.data(client.get_graph(args.graph_id))
    return 0


def cmd_runs(args: argparse.Namespace, out: Output, client: HopgraphClient) -> int:
    if args.action == "list":
        rows = client.list_runs(args.graph_id, args.status)
        out.table(rows, ["run_id", "graph_id", "status", "created_at", "updated_at"])
    elif args.action == "show":
        out.data(client.get_run(args.run_id))
    elif args.action == "logs":
        out.table(
            client.steps(args.run_id),
            ["seq", "node", "tool", "status", "duration_ms", "next", "error"],
        )
    else:
        run = client.cancel(args.run_id)
        if out.as_json:
            out.data(run)
        else:
            out.console.print(f"run {args.run_id} is {run.get('status')}", highlight=False)
    return 0


def cmd_tools(args: argparse.Namespace, out: Output, client: HopgraphClient) -> int:
    tools = client.tools()
    out.table(tools, ["name", "description"])
    return 0


def cmd_run(args: argparse.Namespace, out: Output, client: HopgraphClient) -> int:
    state = _initial_state(args)
    if args.local:
        from infra.local_run import run_local

        toolkits = args.toolkit or os.environ.get("HOPGRAPH_TOOLKITS", DEFAULT_TOOLKITS).split(",")
        return run_local(args.target, state, toolkits, args.max_steps, out.console, out.as_json)
    graph_id = args.target
    if Path(args.target).is_file():
        graph_id = client.create_graph(_read_json_arg("@" + args.target, args.target))["graph_id"]
    started = client.start_run(graph_id, state, args.max_steps, args.idempotency_key)
    run_id = started["run_id"]
    if not args.follow:
        if out.as_json:
            out.data(started)
        else:
            out.console.print(f"started run [bold]{run_id}[/] ({started.get('status')})")
        return 0
    return follow(client, args.ws, run_id, out, args.timeout)


def follow(client: HopgraphClient, ws_url: str, run_id: str, out: Output, timeout: float) -> int:
    """Stream a run's steps: the subscription replays those already committed, then the new
    ones come live, each once and in order (infra/client.py:follow_events)."""
    if not out.as_json:
        out.console.print(f"following run [bold]{run_id}[/]", highlight=False)
    progress = RunProgress(out.console, show_state=not out.as_json)
    with progress:
        for event in follow_events(ws_url, run_id, timeout):
            _show(out, progress, event)
    final = progress.final or {}
    return 0 if final.get("status") == "completed" else 1


def _show(out: Output, progress: RunProgress, event: dict[str, Any]) -> None:
    if out.as_json:  # one JSON event per line, for scripts
        print(json.dumps(event, default=str), flush=True)
        progress.record(event)
    else:
        progress.event(event)


COMMANDS = {"graphs": cmd_graphs, "runs": cmd_runs, "tools": cmd_tools, "run": cmd_run}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "dev":
        from infra.local_stack import serve

        return serve(host=args.host, port=args.port, ws_port=args.ws_port, dispatch=args.dispatch)
    out = Output(args.json)
    client = HopgraphClient(args.api)
    try:
        return COMMANDS[args.command](args, out, client)
    except (ApiError, UsageError) as exc:
        Console(stderr=True).print(f"[red]error:[/] {exc}", highlight=False)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
