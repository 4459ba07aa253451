"""``hopgraph``: the command line.

A client of the HTTP and WebSocket APIs (``--api``/``HOPGRAPH_API``, ``--ws``/``HOPGRAPH_WS``),
the in-process runner (``run FILE --local``), and ``dev``, which starts the local stack.
Exit codes: 0 success (a completed run), 1 a run that did not complete, 2 a usage or API error.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from infra.cli import time_travel
from infra.cli.client import (
    ApiError,
    ApiUnreachable,
    HopgraphClient,
    follow_events,
    unreachable_reason,
)
from infra.cli.credentials import DEFAULT_SECRET_FILE, LoginFailed
from infra.cli.inputs import (
    UsageError,
    json_argument,
    names_a_file,
    read_file,
)
from infra.cli.progress import RunProgress
from infra.cli.tables import GRAPHS, RUNS, STEPS, TOOLS, Field, first_sentence, print_table
from infra.project.graphs import is_module_reference, load_graph
from infra.project.settings import (
    Project,
    ProjectError,
    activate,
    find_project,
    toolkit_modules,
)

DEFAULT_API = "http://127.0.0.1:8000"
DEFAULT_WS = "ws://127.0.0.1:8001"


# -- argument parsing ----------------------------------------------------------------------
# Each level's help has a description, what each argument means and an example; a command
# lists only the options it uses.
class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples keep their line breaks; option help is wrapped."""


Subcommands = argparse._SubParsersAction  # argparse's own name for add_subparsers()'s result


def _parser(
    parent: Subcommands[argparse.ArgumentParser],
    name: str,
    summary: str,
    description: str,
    examples: str,
    parents: tuple[argparse.ArgumentParser, ...] = (),
) -> argparse.ArgumentParser:
    return parent.add_parser(
        name,
        help=summary,
        description=description,
        epilog="examples:\n" + examples,
        formatter_class=_HelpFormatter,
        parents=list(parents),
    )


def _api_options(ws: bool = False) -> argparse.ArgumentParser:
    """--api (and --ws for commands that follow a run) and --json, given after the command.

    SUPPRESS: an option not given here leaves the one given before the command in place."""
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("connection and output")
    group.add_argument(
        "--api",
        metavar="URL",
        default=argparse.SUPPRESS,
        help=f"HTTP API base URL (default: $HOPGRAPH_API or {DEFAULT_API})",
    )
    if ws:
        group.add_argument(
            "--ws",
            metavar="URL",
            default=argparse.SUPPRESS,
            help="WebSocket API URL (default: $HOPGRAPH_WS, else the API's own)",
        )
    group.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON for scripts"
    )
    return options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hopgraph",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument(
        "--api",
        metavar="URL",
        default=os.environ.get("HOPGRAPH_API", DEFAULT_API),
        help=f"HTTP API base URL (default: $HOPGRAPH_API or {DEFAULT_API})",
    )
    parser.add_argument(
        "--ws",
        metavar="URL",
        default=os.environ.get("HOPGRAPH_WS"),
        help="WebSocket API URL (default: $HOPGRAPH_WS, else the one the API names in "
        f"/health, else {DEFAULT_WS})",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_init(sub)
    _add_dev(sub)
    _add_login(sub)
    _add_graphs(sub)
    _add_run(sub)
    _add_runs(sub)
    _add_tools(sub)
    return parser


DESCRIPTION = """\
hopgraph runs LangGraph-style workflow graphs, each step a durable serverless hop.

It talks to the hopgraph HTTP and WebSocket APIs: the local stack (started by
'make dev' or 'hopgraph dev') or a deployment. 'hopgraph run FILE --local' runs
a graph in this process, with no stack at all."""

EPILOG = """\
examples:
  hopgraph init my-agent
  hopgraph dev
  hopgraph run examples/code_review.json --set code=@examples/sample_code.py -f
  hopgraph runs list
  hopgraph login --user alice
  hopgraph COMMAND --help

exit codes: 0 success (a run that completed), 1 a run that did not complete,
2 a usage or API error, 130 interrupted (Ctrl-C)."""


def _add_dev(sub: Subcommands[argparse.ArgumentParser]) -> None:
    dev = _parser(
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


LLM_HELP = (
    "the model provider of every model node: scripted, bedrock or openai=URL (an "
    "OpenAI-compatible endpoint, e.g. openai=http://localhost:11434/v1); default: each "
    "node's own, or $HOPGRAPH_LLM"
)
TOOLKIT_HELP = (
    "one more toolkit module to load (repeatable), beside the built-in toolkits, "
    "$HOPGRAPH_TOOLKITS and the project's [tool.hopgraph] toolkits"
)


def _add_init(sub: Subcommands[argparse.ArgumentParser]) -> None:
    init = _parser(
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


def _add_login(sub: Subcommands[argparse.ArgumentParser]) -> None:
    login = _parser(
        sub,
        "login",
        "sign in: store a token for the other commands",
        "Sign in: store a token that the other commands send to this API (in your\n"
        "config folder, $HOPGRAPH_CONFIG_DIR or ~/.config/hopgraph, per API URL).\n"
        "--user asks the local stack's issuer for a token of that user; --token stores a\n"
        "token of your identity provider (Cognito or your own), for a deployment.\n"
        "Without a stored token, commands to the local stack act as the user 'dev';\n"
        "$HOPGRAPH_TOKEN, when set, is sent instead of any stored token.",
        "  hopgraph login --user alice\n"
        "  hopgraph login --user ops --admin\n"
        "  hopgraph login --api https://abc123.execute-api.eu-west-1.amazonaws.com "
        "--token eyJ...",
        (_api_options(),),
    )
    who = login.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", metavar="NAME", help="a user of the local stack, to sign in as")
    who.add_argument("--token", metavar="JWT", help="a token from your identity provider")
    login.add_argument(
        "--admin", action="store_true", help="with --user: an admin, who sees every user's runs"
    )
    login.add_argument(
        "--secret-file",
        metavar="PATH",
        help="with --user, on a stack started with --auth strict: the login secret it keeps "
        f"(default: $HOPGRAPH_LOGIN_SECRET, else {DEFAULT_SECRET_FILE} if it exists)",
    )
    _parser(
        sub,
        "logout",
        "forget the token stored for this API",
        "Sign out: forget the token stored for this API (--api or $HOPGRAPH_API).",
        "  hopgraph logout",
        (_api_options(),),
    )
    _parser(
        sub,
        "whoami",
        "say who the commands act as on this API",
        "Say who the commands act as on this API, and where the token comes from:\n"
        "$HOPGRAPH_TOKEN, a stored one (hopgraph login), or none (then the local stack's\n"
        "dev mode acts as the user 'dev'; strict mode and a deployment refuse).",
        "  hopgraph whoami\n  hopgraph --json whoami",
        (_api_options(),),
    )


def _add_graphs(sub: Subcommands[argparse.ArgumentParser]) -> None:
    graphs = _parser(
        sub,
        "graphs",
        "create, list and show graphs",
        "Create, list and show graphs. A graph is immutable: its id always means the\n"
        "same definition.",
        "  hopgraph graphs create examples/code_review.json\n  hopgraph graphs list\n"
        "  hopgraph graphs push",
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    create = _parser(
        graphs,
        "create",
        "create a graph from a JSON file or a Python module",
        "Create a graph from a JSON file, in any accepted dialect, or from a graph in a\n"
        "Python module (MODULE:NAME, a StateGraph of engine.builder), and print its id.\n"
        "A graph with the same content that exists already is reused, not copied.",
        "  hopgraph graphs create examples/code_review.json\n"
        "  hopgraph graphs create my_project.graphs:review",
        (_api_options(),),
    )
    create.add_argument("file", metavar="GRAPH", help="a graph JSON file, or MODULE:NAME")
    _parser(
        graphs,
        "push",
        "create every graph of the project",
        "Create every graph the project's pyproject.toml lists ([tool.hopgraph] graphs),\n"
        "each reused if a graph with the same content exists, and print their ids.",
        "  hopgraph graphs push\n  hopgraph graphs push --api https://abc.execute-api...",
        (_api_options(),),
    )
    _parser(
        graphs,
        "list",
        "list graphs",
        "List the graphs, newest first.",
        "  hopgraph graphs list\n  hopgraph graphs list --json",
        (_api_options(),),
    )
    show = _parser(
        graphs,
        "show",
        "show a graph",
        "Show a graph's canonical definition (JSON), or draw it as a Mermaid flowchart.",
        "  hopgraph graphs show GRAPH_ID\n  hopgraph graphs show GRAPH_ID --mermaid",
        (_api_options(),),
    )
    show.add_argument("graph_id", metavar="GRAPH_ID", help="the graph's id (g_...)")
    show.add_argument("--mermaid", action="store_true", help="print Mermaid flowchart text")


def _add_run(sub: Subcommands[argparse.ArgumentParser]) -> None:
    run = _parser(
        sub,
        "run",
        "start a run (or run in-process with --local)",
        "Start a run of a graph, given by its id or by a JSON file. A file's graph is\n"
        "created, or reused when a graph with the same content exists. With --follow,\n"
        "each step is shown as it commits and the final state at the end; the exit code\n"
        "is then 0 only if the run completes. With --local, the run happens in this\n"
        "process, without any stack.",
        "  hopgraph run examples/code_review.json --set code=@examples/sample_code.py -f\n"
        '  hopgraph run GRAPH_ID --input \'{"code": "def f(): pass"}\'\n'
        "  hopgraph run examples/code_review.json --local --set code=@examples/sample_code.py",
        (_api_options(ws=True),),
    )
    run.add_argument(
        "target", metavar="GRAPH", help="a graph id (g_...), a graph JSON file, or MODULE:NAME"
    )
    state = run.add_argument_group("initial state")
    state.add_argument(
        "--input",
        metavar="JSON",
        default="{}",
        help="the initial state: a JSON object, or @FILE of one (default: {})",
    )
    state.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set one state key (repeatable); VALUE is JSON or else text; @FILE reads a file",
    )
    how = run.add_argument_group("how it runs")
    how.add_argument("--follow", "-f", action="store_true", help="show the steps live, to the end")
    how.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="with --follow: longest wait for the next step (default: 300)",
    )
    how.add_argument(
        "--max-steps",
        type=int,
        metavar="N",
        help="fail the run after N steps (default: the graph's limit)",
    )
    how.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="the same key starts the same run once, however often it is sent",
    )
    local = run.add_argument_group("in this process")
    local.add_argument("--local", action="store_true", help="run here, with no stack")
    local.add_argument(
        "--toolkit",
        action="append",
        metavar="MODULE",
        default=[],
        help=f"with --local: {TOOLKIT_HELP}",
    )
    local.add_argument("--llm", metavar="PROVIDER", help=f"with --local: {LLM_HELP}")
    local.add_argument(
        "--subgraph",
        action="append",
        metavar="FILE",
        default=[],
        help="with --local: a graph file a subgraph node names (by the graph's name); "
        "repeatable. A stack finds it among your stored graphs instead",
    )


def _add_runs(sub: Subcommands[argparse.ArgumentParser]) -> None:
    runs = _parser(
        sub,
        "runs",
        "list, show, follow, log, cancel, fork and redrive runs",
        "Look at runs: list them, show one, follow it live, read its steps, cancel it;\n"
        "travel in time: read its history, fork it, redrive it, edit its state.",
        "  hopgraph runs list --status failed\n  hopgraph runs follow RUN_ID\n"
        '  hopgraph runs fork RUN_ID --from 1 --update \'{"topic": "owls"}\'',
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = _parser(
        runs,
        "list",
        "list runs",
        "List runs, newest first. On a narrow terminal the optional columns are left\n"
        "out; --json has every field.",
        "  hopgraph runs list\n  hopgraph runs list --graph-id GRAPH_ID --status running",
        (_api_options(),),
    )
    listing.add_argument("--graph-id", metavar="GRAPH_ID", help="only the runs of this graph")
    listing.add_argument(
        "--status",
        choices=["running", "completed", "failed", "cancelled"],
        help="only the runs with this status",
    )
    actions = {
        "show": (
            "show a run",
            "Show a run: its status, graph, times, steps, the node it runs next, its error,\n"
            "and each key of its state with a short value. --state prints the whole state\n"
            "(JSON), --json the whole run.",
        ),
        "logs": ("show a run's steps", "Show a run's execution log: every committed step."),
        "cancel": ("cancel a running run", "Cancel a running run; its next step does not run."),
    }
    for action, (summary, description) in actions.items():
        parser = _parser(
            runs,
            action,
            summary,
            description,
            f"  hopgraph runs {action} RUN_ID",
            (_api_options(),),
        )
        parser.add_argument("run_id", metavar="RUN_ID", help="the run's id (r_...)")
        if action == "show":
            parser.add_argument(
                "--state", action="store_true", help="print the whole state, as JSON"
            )
    follow = _parser(
        runs,
        "follow",
        "follow a run live",
        "Follow a run: the steps it has committed, then each new one as it commits, to\n"
        "its end. Ctrl-C stops following; the run goes on. The exit code is 0 only if\n"
        "the run completes.",
        "  hopgraph runs follow RUN_ID",
        (_api_options(ws=True),),
    )
    follow.add_argument("run_id", metavar="RUN_ID", help="the run's id (r_...)")
    follow.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="longest wait for the next step (default: 300)",
    )
    time_travel.add_actions(runs, _parser, _api_options)


def _add_tools(sub: Subcommands[argparse.ArgumentParser]) -> None:
    _parser(
        sub,
        "tools",
        "list the registered tools",
        "List the tools that graph nodes can call, with what each does.",
        "  hopgraph tools\n  hopgraph tools --json",
        (_api_options(),),
    )


# -- output --------------------------------------------------------------------------------
class _Console(Console):
    def on_broken_pipe(self) -> None:
        """Leave a closed pipe (``| head``) to ``main``, which ends quietly."""
        raise BrokenPipeError


class Output:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.console: Console = _Console()

    def data(self, value: Any) -> None:
        print(json.dumps(value, indent=2, default=str))

    def say(self, text: str) -> None:
        """A line for people (rich markup); nothing in JSON mode, where stdout is data."""
        if not self.as_json:
            self.console.print(text, highlight=False)

    def table(self, rows: list[dict[str, Any]], fields: tuple[Field, ...]) -> None:
        if self.as_json:
            self.data(rows)
        else:
            print_table(self.console, rows, fields)


def _initial_state(args: argparse.Namespace) -> dict[str, Any]:
    state = json_argument(args.input, "--input")
    if not isinstance(state, dict):
        raise UsageError("--input must be a JSON object")
    for assignment in args.set:
        key, sep, value = assignment.partition("=")
        if not sep or not key:
            raise UsageError(f"--set expects KEY=VALUE, got {assignment!r}")
        if value.startswith("@"):
            state[key] = read_file(value[1:])
        else:
            try:
                state[key] = json.loads(value)
            except json.JSONDecodeError:
                state[key] = value
    return state


# -- commands ------------------------------------------------------------------------------
def cmd_graphs(args: argparse.Namespace, out: Output, client: HopgraphClient) -> int:
    if args.action == "push":
        from infra.project.commands import push_graphs

        return push_graphs(find_project(), out, client)
    if args.action == "create":
        graph, created = client.find_or_create_graph(load_graph(args.file))
        if out.as_json:
            out.data(graph)
        elif created:
            out.say(f"created graph [bold]{graph['graph_id']}[/]")
        else:
            out.say(f"graph [bold]{graph['graph_id']}[/] has the same content: reused, not copied")
    elif args.action == "list":
        out.table(client.list_graphs(), GRAPHS)
    elif args.mermaid:
        print(client.mermaid(args.graph_id), end="")
    else:
        out.data(client.get_graph(args.graph_id))
    return 0


def cmd_runs(args: argparse.Namespace, out: Output, client: HopgraphClient) -> int:
    if args.action in time_travel.ACTIONS:
        return time_travel.run_action(args, out, client)
    if args.action == "list":
        out.table(client.list_runs(args.graph_id, args.status), RUNS)
    elif args.action == "show":
        run = client.get_run(args.run_id)
        if out.as_json:
            out.data(run)
        elif args.state:
            out.console.print_json(json.dumps(run.get("state"), default=str))
        else:
            from infra.cli.run_view import show_run

            show_run(out.console, run)
    elif args.action == "logs":
        out.table(client.steps(args.run_id), STEPS)
    elif args.action == "follow":
        client.get_run(args.run_id)  # an unknown run, or no stack, is said plainly first
        return follow(client, ws_url(args, client), args.run_id, out, args.timeout)
    else:
        run = client.cancel(args.run_id)
        if out.as_json:
            out.data(run)
        else:
            out.say(f"run {args.run_id} is {run.get('status')}")
    return 0


def cmd_login(args: argparse.Namespace, out: Output, client: HopgraphClient) -> int:
    from infra.cli import credentials

    if args.token is not None:
        if args.admin:
            raise UsageError("--admin goes with --user; an admin's token says so itself")
        stored = credentials.StoredToken(args.token, "", _expiry(args.token))
    else:
        secret = credentials.login_secret(args.secret_file)
        stored = credentials.local_token(client.api, args.user, args.admin, secret=secret)
    path = credentials.store_token(client.api, stored)
    if out.as_json:
        out.data({"api": client.api, "user": stored.user, "expires_at": stored.expires_at})
    else:
        who = f"as {stored.user}" if stored.user else "with your token"
        out.say(f"signed in to {client.api} {who} (token kept in {path})")
    return 0


def cmd_logout(args: argparse.Namespace, out: Output, client: HopgraphClient) -> int:
    from infra.cli import credentials

    forgot = credentials.forget_token(client.api)
    if out.as_json:
        out.data({"api": client.api, "signed_out": forgot})
    elif forgot:
        out.say(f"signed out of {client.api} (its stored token is forgotten)")
    else:
        out.say(f"no token was stored for {client.api}")
    if os.environ.get("HOPGRAPH_TOKEN"):
        _note("$HOPGRAPH_TOKEN is still set, and sent: unset it too")
    return 0


def cmd_whoami(args: argparse.Namespace, out: Output, client: HopgraphClient) -> int:
    from infra.cli import credentials

    who = credentials.whoami(client.api)
    if out.as_json:
        out.data({"api": client.api, **who})
        return 0
    if who["source"] == "none":
        out.say(
            f"not signed in to {client.api}: the local stack's dev mode acts as 'dev'; "
            "sign in with 'hopgraph login --user NAME'"
        )
        return 0
    user = who["user"] or "(the token names no user)"
    expiry = who["expires_at"]
    when = f", expires {_clock(expiry)}" if isinstance(expiry, int) else ""
    state = " (expired: sign in again)" if who["expired"] else ""
    out.say(f"{user} on {client.api}, token from {who['source']}{when}{state}")
    return 0


def _clock(epoch: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M")


def _expiry(token: str) -> int | None:
    """A token's ``exp``, read without checking it (the API checks it)."""
    import jwt

    try:
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    except jwt.PyJWTError:
        raise UsageError("--token is not a JWT (three base64url parts separated by dots)") from None
    return exp if isinstance(exp, int) else None


def cmd_tools(args: argparse.Namespace, out: Output, client: HopgraphClient) -> int:
    tools = client.tools()
    if not out.as_json:  # descriptions are docstrings: their reST ``literals`` read as plain,
        tools = [  # and their first sentence is their summary (a table row is one line)
            {**t, "description": first_sentence(str(t.get("description", "")).replace("``", ""))}
            for t in tools
        ]
    out.table(tools, TOOLS)
    return 0


def cmd_run(args: argparse.Namespace, out: Output, client: HopgraphClient) -> int:
    state = _initial_state(args)
    if args.local:
        return _run_local(args, state, out)
    if args.subgraph:
        raise UsageError("--subgraph goes with --local: a stack finds the graph a subgraph node "
                         "names among your stored graphs")  # fmt: skip
    graph_id = _graph_id(args.target, out, client)
    started = client.start_run(graph_id, state, args.max_steps, args.idempotency_key)
    run_id = started["run_id"]
    if not args.follow:
        if out.as_json:
            out.data(started)
        else:
            out.say(f"started run [bold]{run_id}[/] ({started.get('status')})")
        return 0
    return follow(client, ws_url(args, client), run_id, out, args.timeout)


def _graph_id(target: str, out: Output, client: HopgraphClient) -> str:
    """``run TARGET``'s graph: the id given, or the file's graph (reused if it exists)."""
    if not names_a_file(target) and not is_module_reference(target):
        return target
    graph, created = client.find_or_create_graph(load_graph(target))
    graph_id = str(graph["graph_id"])
    out.say(f"{'created' if created else 'reusing'} graph [bold]{graph_id}[/] of {target}")
    return graph_id


def _run_local(args: argparse.Namespace, state: dict[str, Any], out: Output) -> int:
    from infra.cli.local_run import run_local

    if not names_a_file(args.target) and not is_module_reference(args.target):
        raise UsageError(f"--local runs a graph from a file, and there is no file {args.target}")
    doc = load_graph(args.target)
    toolkits = toolkit_modules(find_project(), args.toolkit, os.environ.get("HOPGRAPH_TOOLKITS"))
    subgraphs = {path: load_graph(path) for path in args.subgraph}
    return run_local(doc, args.target, state, toolkits, args.max_steps, out.console, out.as_json,
                     subgraphs)  # fmt: skip


def _choose_llm(args: argparse.Namespace) -> bool:
    """``--llm``: every model node's provider, for the toolkits this process loads (the
    local stack's handlers and ``run --local`` read it from the environment); False when
    it names none."""
    if not getattr(args, "llm", None):
        return True
    from functions.models import LLM_ENV, LlmConfig

    try:
        LlmConfig.parse(args.llm)
    except ValueError as exc:
        _error(str(exc))
        return False
    os.environ[LLM_ENV] = args.llm
    return True


def ws_url(args: argparse.Namespace, client: HopgraphClient) -> str:
    """The WebSocket API: --ws or $HOPGRAPH_WS; else the one the API names (so that one
    setting, the API's URL, finds both); else the local stack's default."""
    if not args.ws:
        args.ws = client.websocket_url() or DEFAULT_WS
    return str(args.ws)


def follow(client: HopgraphClient, ws_url: str, run_id: str, out: Output, timeout: float) -> int:
    """Follow a run to its end; Ctrl-C or a lost connection stop the following, not the run,
    and say how to pick it up again."""
    again = f"hopgraph runs follow {run_id}"
    try:
        return _stream(ws_url, run_id, out, timeout, client.token)
    except KeyboardInterrupt:
        _note(f"stopped following run {run_id}; the run goes on.\nfollow it again: {again}")
        return 130
    except TimeoutError:
        _note(f"no news of run {run_id} for {timeout:g} s; it may still be running.")
        _note(f"follow it again: {again}")
        return 1
    except ConnectionClosed:
        _note(f"the WebSocket connection closed; run {run_id} goes on.\nfollow it again: {again}")
        return 1
    except InvalidStatus as refused:  # the $connect authorizer said no (401, 403)
        answer = refused.response
        raise ApiError(answer.status_code, bytes(answer.body).decode(errors="replace")) from None
    except BrokenPipeError:  # our reader left (``| head``), not the WebSocket: end quietly
        raise
    except (OSError, WebSocketException) as exc:
        raise ApiUnreachable(ws_url, unreachable_reason(exc)) from None


def _stream(ws_url: str, run_id: str, out: Output, timeout: float, token: str | None) -> int:
    """Stream a run's steps: the subscription replays those already committed, then the new
    ones come live, each once and in order (infra/cli/client.py:follow_events)."""
    out.say(f"following run [bold]{run_id}[/]")
    progress = RunProgress(out.console, show_state=not out.as_json)
    with progress:
        for event in follow_events(ws_url, run_id, timeout, token=token):
            _show(out, progress, event)
    final = progress.final or {}
    return 0 if final.get("status") == "completed" else 1


def _show(out: Output, progress: RunProgress, event: dict[str, Any]) -> None:
    if out.as_json:  # one JSON event per line, for scripts
        print(json.dumps(event, default=str), flush=True)
        progress.record(event)
    else:
        progress.event(event)


COMMANDS = {
    "graphs": cmd_graphs,
    "runs": cmd_runs,
    "tools": cmd_tools,
    "run": cmd_run,
    "login": cmd_login,
    "logout": cmd_logout,
    "whoami": cmd_whoami,
}


# -- errors --------------------------------------------------------------------------------
def _note(text: str) -> None:
    Console(stderr=True).print(text, highlight=False, markup=False)


def _error(text: str, command: str | None = None) -> None:
    """``error: TEXT`` on stderr, and a command to copy, never broken over two lines."""
    console = Console(stderr=True)
    console.print(f"[red]error:[/] {escape(text)}", highlight=False)
    if command:
        console.print(f"  {command}", highlight=False, markup=False, soft_wrap=True)


def _unreachable(exc: ApiUnreachable, args: argparse.Namespace) -> str:
    """What to do when nothing answers: start the stack, point elsewhere, or run locally."""
    option = "--ws" if args.ws and exc.url == args.ws.rstrip("/") else "--api"
    lines = [
        f"{exc}.",
        "Is the local stack running? Start it with 'make dev' (or 'hopgraph dev') in another "
        f"terminal, or point at another stack with {option} URL.",
    ]
    if args.command == "run" and names_a_file(args.target):
        lines.append("Or run the graph in this process, without a stack:")
    return "\n".join(lines)


SIGN_IN = (
    "\nSign in: 'hopgraph login --user NAME' on the local stack, or "
    "'hopgraph login --token TOKEN' with a token of the deployment's identity provider."
)


def _local(args: argparse.Namespace) -> str:
    """The same ``run`` command with ``--local``, to copy."""
    words = ["hopgraph", "run", args.target, "--local"]
    words += [f"--set {shlex.quote(s)}" for s in args.set]
    if args.input != "{}":
        words.append(f"--input {shlex.quote(args.input)}")
    return " ".join(words)


def _project_defaults(args: argparse.Namespace, project: Project | None, argv: list[str]) -> None:
    """The project's ``api`` and ``ws``, where neither an option nor the environment set one."""
    for option, variable in (("api", "HOPGRAPH_API"), ("ws", "HOPGRAPH_WS")):
        value = getattr(project, option, None)
        given = any(a == f"--{option}" or a.startswith(f"--{option}=") for a in argv)
        if value and not given and variable not in os.environ:
            setattr(args, option, value)


def _quiet_stdout() -> None:
    """After a closed pipe (``| head``): nothing more to say, and nothing at exit either
    (Python would report the failed flush of stdout)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    words = sys.argv[1:] if argv is None else argv
    if not words:  # bare `hopgraph`: what it does, not an error
        parser.print_help()
        return 0
    args = parser.parse_args(words)
    try:
        project = find_project()
    except ProjectError as exc:
        _error(str(exc))
        return 2
    activate(project)
    _project_defaults(args, project, words)
    if args.command == "init":
        from infra.project.init import cmd_init

        return cmd_init(args)
    if not _choose_llm(args):
        return 2
    if args.command == "dev":
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
    from infra.cli.credentials import token_for

    out = Output(args.json)
    client = HopgraphClient(args.api, token=lambda: token_for(args.api))
    try:
        return COMMANDS[args.command](args, out, client)
    except ApiUnreachable as exc:
        local = args.command == "run" and (
            names_a_file(args.target) or is_module_reference(args.target)
        )
        _error(_unreachable(exc, args), _local(args) if local else None)
    except ApiError as exc:
        _error(str(exc) + (SIGN_IN if exc.status == 401 else ""))
    except (LoginFailed, UsageError) as exc:
        _error(str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _quiet_stdout()
        return 141  # as a process that SIGPIPE ended: 128 + 13
    return 2


if __name__ == "__main__":
    sys.exit(main())
