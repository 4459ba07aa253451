"""``hopgraph run``: start a run of a graph (by id, file or module), follow it, or run it in
this process (``--local``)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
from typing import Any

from infra.cli.client import HopgraphClient
from infra.cli.inputs import UsageError, json_argument, names_a_file, read_file
from infra.cli.output import Output
from infra.cli.parsing import LLM_HELP, TOOLKIT_HELP, Subcommands, api_options, subcommand
from infra.cli.runs import follow, ws_url
from infra.project.graphs import is_module_reference, load_graph
from infra.project.settings import find_project, toolkit_modules


def add_run(sub: Subcommands[argparse.ArgumentParser]) -> None:
    run = subcommand(
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
        (api_options(ws=True),),
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


def local_command(args: argparse.Namespace) -> str:
    """The same ``run`` command with ``--local``, to copy."""
    words = ["hopgraph", "run", args.target, "--local"]
    words += [f"--set {shlex.quote(s)}" for s in args.set]
    if args.input != "{}":
        words.append(f"--input {shlex.quote(args.input)}")
    return " ".join(words)
