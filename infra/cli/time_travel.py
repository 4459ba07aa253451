"""``hopgraph runs history | fork | redrive | edit``: time travel over a run's supersteps.

``history`` lists a run's checkpoints (the state after each superstep; ``--states`` prints
them too), ``fork`` starts a new run from one of them with an update, ``redrive`` takes a
failed run on from its failed superstep, and ``edit`` changes a paused run's state.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from infra.cli.client import HopgraphClient
from infra.cli.inputs import UsageError, json_argument
from infra.cli.tables import Field

if TYPE_CHECKING:
    from infra.cli.output import Output

ACTIONS = frozenset({"history", "fork", "redrive", "edit"})
HISTORY = (
    Field("seq", "step", "number"),
    Field("node", "node", "id"),
    Field("status", "status", "word"),
    Field("next", "next", optional=True),
    Field("source", "source", "word", optional=True),
    Field("error", "error", optional=True),
)

Parser = Callable[..., argparse.ArgumentParser]


def add_actions(runs: Any, parser: Parser, api_options: Callable[[], Any]) -> None:
    """The four actions, under ``hopgraph runs`` (``parser`` is the command line's own)."""
    history = parser(
        runs, "history", "show a run's checkpoints",
        "Show a run's history: the state after each superstep (a checkpoint), what ran and\n"
        "where it went next. --states prints each state too (JSON). A fork names its parent.",
        "  hopgraph runs history RUN_ID\n  hopgraph runs history RUN_ID --states --json",
        (api_options(),),
    )  # fmt: skip
    history.add_argument("run_id", metavar="RUN_ID", help="the run's id (r_...)")
    history.add_argument("--states", action="store_true", help="include each state")
    fork = parser(
        runs, "fork", "fork a run from one of its supersteps",
        "Start a new run from the state after superstep --from of RUN_ID, with --update\n"
        "applied through the graph's reducers (as --as-node's write when given), going on\n"
        "where that superstep went next.",
        "  hopgraph runs fork RUN_ID --from 1 --update '{\"topic\": \"chickens\"}'\n"
        "  hopgraph runs fork RUN_ID --from 2 --as-node review --update @fix.json",
        (api_options(),),
    )  # fmt: skip
    fork.add_argument("run_id", metavar="RUN_ID", help="the run to fork (r_...)")
    fork.add_argument("--from", dest="from_seq", type=int, required=True, metavar="SEQ",
                      help="the superstep whose state the fork starts from")  # fmt: skip
    _update_options(fork, required=False)
    fork.add_argument("--key", metavar="KEY", help="idempotency key: the same key forks once")
    fork.add_argument("--max-steps", type=int, metavar="N", help="step limit of the fork")
    redrive = parser(
        runs, "redrive", "redrive a failed run",
        "Take a failed run on from its failed superstep, as a new attempt (the failure\n"
        "stays in its log). A run its step limit stopped needs a higher --max-steps.",
        "  hopgraph runs redrive RUN_ID\n  hopgraph runs redrive RUN_ID --max-steps 200",
        (api_options(),),
    )  # fmt: skip
    redrive.add_argument("run_id", metavar="RUN_ID", help="the failed run (r_...)")
    redrive.add_argument("--max-steps", type=int, metavar="N", help="a higher step limit")
    edit = parser(
        runs, "edit", "edit a paused run's state",
        "Apply --update to a paused run's state through the reducers; the edit is an\n"
        "entry of its own in the run's log. Only a paused run can be edited.",
        "  hopgraph runs edit RUN_ID --update '{\"approved\": true}'",
        (api_options(),),
    )  # fmt: skip
    edit.add_argument("run_id", metavar="RUN_ID", help="the paused run (r_...)")
    _update_options(edit, required=True)


def _update_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument("--update", metavar="JSON", required=required,
                        help="a JSON object, or @FILE to read it from a file")  # fmt: skip
    parser.add_argument("--as-node", metavar="NODE", help="apply it as this node's write")


def _update(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    value = json_argument(text, "--update")
    if not isinstance(value, dict):
        raise UsageError("--update must be a JSON object (the keys to change)")
    return value


def run_action(args: argparse.Namespace, out: Output, client: HopgraphClient) -> int:
    """Carry out one of :data:`ACTIONS`."""
    if args.action == "history":
        return _history(args, out, client)
    if args.action == "fork":
        body: dict[str, Any] = {"from_seq": args.from_seq, "update": _update(args.update)}
        for name, value in (("as_node", args.as_node), ("idempotency_key", args.key),
                            ("max_steps", args.max_steps)):  # fmt: skip
            if value is not None:
                body[name] = value
        forked = client.fork(args.run_id, body)
        if out.as_json:
            out.data(forked)
        else:
            out.say(f"run {forked.get('run_id')} forked from {args.run_id} at step "
                    f"{args.from_seq}: {forked.get('status')}")  # fmt: skip
        return 0
    if args.action == "redrive":
        run = client.redrive(args.run_id, args.max_steps)
    else:
        run = client.edit_state(args.run_id, _update(args.update), args.as_node)
    if out.as_json:
        out.data(run)
    else:
        verb = "redriven" if args.action == "redrive" else "edited"
        out.say(f"run {args.run_id} {verb}: {run.get('status')} at step {run.get('steps')}")
    return 0


def _history(args: argparse.Namespace, out: Output, client: HopgraphClient) -> int:
    items, parent = client.history(args.run_id, states=args.states)
    if out.as_json:
        out.data({"run_id": args.run_id, "parent": parent, "items": items})
        return 0
    if parent:
        out.say(f"forked from run {parent['run_id']} at step {parent['seq']}")
    rows = [{**i, "next": _next(i.get("next"))} for i in items]
    out.table(rows, HISTORY)
    if args.states:
        for item in items:
            out.say(f"[bold]state after step {item['seq']}[/]")
            out.console.print_json(json.dumps(item.get("state"), default=str))
    return 0


def _next(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return "" if value is None else str(value)
