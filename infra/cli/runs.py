"""``hopgraph runs``: list, show, follow, read and cancel runs (time travel's actions are in
infra/cli/time_travel.py)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from infra.cli import time_travel
from infra.cli.client import (
    ApiError,
    ApiUnreachable,
    HopgraphClient,
    follow_events,
    unreachable_reason,
)
from infra.cli.inputs import json_argument
from infra.cli.output import Output, note
from infra.cli.parsing import DEFAULT_WS, Subcommands, api_options, subcommand
from infra.cli.progress import RunProgress
from infra.cli.run_view import show_questions
from infra.cli.tables import RUNS, STEPS


def add_runs(sub: Subcommands[argparse.ArgumentParser]) -> None:
    runs = subcommand(
        sub,
        "runs",
        "list, show, follow, log, resume, cancel, fork and redrive runs",
        "Look at runs: list them, show one, follow it live, read its steps, answer a\n"
        "paused one, cancel it;\n"
        "travel in time: read its history, fork it, redrive it, edit its state.",
        "  hopgraph runs list --status failed\n  hopgraph runs follow RUN_ID\n"
        '  hopgraph runs fork RUN_ID --from 1 --update \'{"topic": "owls"}\'',
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = subcommand(
        runs,
        "list",
        "list runs",
        "List runs, newest first. On a narrow terminal the optional columns are left\n"
        "out; --json has every field.",
        "  hopgraph runs list\n  hopgraph runs list --graph-id GRAPH_ID --status running",
        (api_options(),),
    )
    listing.add_argument("--graph-id", metavar="GRAPH_ID", help="only the runs of this graph")
    listing.add_argument(
        "--status",
        choices=["running", "paused", "completed", "failed", "cancelled"],
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
        parser = subcommand(
            runs,
            action,
            summary,
            description,
            f"  hopgraph runs {action} RUN_ID",
            (api_options(),),
        )
        parser.add_argument("run_id", metavar="RUN_ID", help="the run's id (r_...)")
        if action == "show":
            parser.add_argument(
                "--state", action="store_true", help="print the whole state, as JSON"
            )
    resume = subcommand(
        runs,
        "resume",
        "answer a paused run",
        "Answer the question a paused run waits for: --value is written under the\n"
        "question's key, and the run goes on from that task (its tool does not run\n"
        "again). A breakpoint takes no value. When several questions wait, --task says\n"
        "which (runs show lists them).",
        "  hopgraph runs resume RUN_ID --value true\n"
        "  hopgraph runs resume RUN_ID --task legal --value '{\"ok\": true}'",
        (api_options(),),
    )
    resume.add_argument("run_id", metavar="RUN_ID", help="the run's id (r_...)")
    resume.add_argument("--value", metavar="JSON", help="the answer, as JSON (default: none)")
    resume.add_argument("--task", metavar="TASK", help="which question, when several wait")
    follow = subcommand(
        runs,
        "follow",
        "follow a run live",
        "Follow a run: the steps it has committed, then each new one as it commits, to\n"
        "its end. Ctrl-C stops following; the run goes on. The exit code is 0 only if\n"
        "the run completes.",
        "  hopgraph runs follow RUN_ID",
        (api_options(ws=True),),
    )
    follow.add_argument("run_id", metavar="RUN_ID", help="the run's id (r_...)")
    follow.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="longest wait for the next step (default: 300)",
    )
    time_travel.add_actions(runs, subcommand, api_options)


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
    elif args.action == "resume":
        value = None if args.value is None else json_argument(args.value, "--value")
        run = client.resume(args.run_id, value, args.task)
        if out.as_json:
            out.data(run)
        else:
            out.say(f"run {args.run_id} is {run.get('status')}")
            show_questions(out.console, run)
    else:
        run = client.cancel(args.run_id)
        if out.as_json:
            out.data(run)
        else:
            out.say(f"run {args.run_id} is {run.get('status')}")
    return 0


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
        code, final = _stream(ws_url, run_id, out, timeout, client.token)
    except KeyboardInterrupt:
        note(f"stopped following run {run_id}; the run goes on.\nfollow it again: {again}")
        return 130
    except TimeoutError:
        note(f"no news of run {run_id} for {timeout:g} s; it may still be running.")
        note(f"follow it again: {again}")
        return 1
    except ConnectionClosed:
        note(f"the WebSocket connection closed; run {run_id} goes on.\nfollow it again: {again}")
        return 1
    except InvalidStatus as refused:  # the $connect authorizer said no (401, 403)
        answer = refused.response
        raise ApiError(answer.status_code, bytes(answer.body).decode(errors="replace")) from None
    except BrokenPipeError:  # our reader left (``| head``), not the WebSocket: end quietly
        raise
    except (OSError, WebSocketException) as exc:
        raise ApiUnreachable(ws_url, unreachable_reason(exc)) from None
    if final.get("status") == "paused" and not final.get("pending") and not out.as_json:
        # A status told on subscribing carries no questions: the run's own record does.
        show_questions(out.console, client.get_run(run_id))
    return code


def _stream(
    ws_url: str, run_id: str, out: Output, timeout: float, token: str | None
) -> tuple[int, dict[str, Any]]:
    """Stream a run's steps: the subscription replays those already committed, then the new
    ones come live, each once and in order (infra/cli/client.py:follow_events)."""
    out.say(f"following run [bold]{run_id}[/]")
    progress = RunProgress(out.console, show_state=not out.as_json)
    with progress:
        for event in follow_events(ws_url, run_id, timeout, token=token):
            _show(out, progress, event)
    final = progress.final or {}
    return (0 if final.get("status") == "completed" else 1), final


def _show(out: Output, progress: RunProgress, event: dict[str, Any]) -> None:
    if out.as_json:  # one JSON event per line, for scripts
        print(json.dumps(event, default=str), flush=True)
        progress.record(event)
    else:
        progress.event(event)
