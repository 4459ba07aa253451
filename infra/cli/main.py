"""``hopgraph``: the command line.

A client of the HTTP and WebSocket APIs (``--api``/``HOPGRAPH_API``, ``--ws``/``HOPGRAPH_WS``),
the in-process runner (``run FILE --local``), and ``dev``, which starts the local stack.
Exit codes: 0 success (a completed run), 1 a run that did not complete, 2 a usage or API error.
Each command group's parser and handlers are in a module of their own: graphs.py (and tools),
run.py, runs.py (and time_travel.py), login.py (and logout, whoami), dev.py (and init).
"""

from __future__ import annotations

import argparse
import os
import sys

from infra.cli import dev, graphs, login, run, runs
from infra.cli.client import ApiError, ApiUnreachable, HopgraphClient
from infra.cli.credentials import LoginFailed
from infra.cli.inputs import UsageError, names_a_file
from infra.cli.output import Output, error
from infra.cli.parsing import DEFAULT_API, DEFAULT_WS, HelpFormatter
from infra.project.graphs import is_module_reference
from infra.project.settings import Project, ProjectError, activate, find_project


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hopgraph",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=HelpFormatter,
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
    dev.add_init(sub)
    dev.add_dev(sub)
    login.add_login(sub)
    graphs.add_graphs(sub)
    run.add_run(sub)
    runs.add_runs(sub)
    graphs.add_tools(sub)
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
        error(str(exc))
        return False
    os.environ[LLM_ENV] = args.llm
    return True


COMMANDS = {
    "graphs": graphs.cmd_graphs,
    "runs": runs.cmd_runs,
    "tools": graphs.cmd_tools,
    "run": run.cmd_run,
    "login": login.cmd_login,
    "logout": login.cmd_logout,
    "whoami": login.cmd_whoami,
}


# -- errors --------------------------------------------------------------------------------
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
        error(str(exc))
        return 2
    activate(project)
    _project_defaults(args, project, words)
    if args.command == "init":
        from infra.project.init import cmd_init

        return cmd_init(args)
    if not _choose_llm(args):
        return 2
    if args.command == "dev":
        return dev.cmd_dev(args, project)
    from infra.cli.credentials import token_for

    out = Output(args.json)
    client = HopgraphClient(args.api, token=lambda: token_for(args.api))
    try:
        return COMMANDS[args.command](args, out, client)
    except ApiUnreachable as exc:
        local = args.command == "run" and (
            names_a_file(args.target) or is_module_reference(args.target)
        )
        error(_unreachable(exc, args), run.local_command(args) if local else None)
    except ApiError as exc:
        error(str(exc) + (SIGN_IN if exc.status == 401 else ""))
    except (LoginFailed, UsageError) as exc:
        error(str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _quiet_stdout()
        return 141  # as a process that SIGPIPE ended: 128 + 13
    return 2


if __name__ == "__main__":
    sys.exit(main())
