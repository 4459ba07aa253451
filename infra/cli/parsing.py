"""The command line's argument parsing: how each command's parser is made, the connection and
output options given after a command's name, and the defaults and help texts commands share."""

from __future__ import annotations

import argparse

DEFAULT_API = "http://127.0.0.1:8000"
DEFAULT_WS = "ws://127.0.0.1:8001"


# Each level's help has a description, what each argument means and an example; a command
# lists only the options it uses.
class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples keep their line breaks; option help is wrapped."""


Subcommands = argparse._SubParsersAction  # argparse's own name for add_subparsers()'s result


def subcommand(
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
        formatter_class=HelpFormatter,
        parents=list(parents),
    )


def api_options(ws: bool = False) -> argparse.ArgumentParser:
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


LLM_HELP = (
    "the model provider of every model node: scripted, bedrock or openai=URL (an "
    "OpenAI-compatible endpoint, e.g. openai=http://localhost:11434/v1); default: each "
    "node's own, or $HOPGRAPH_LLM"
)
TOOLKIT_HELP = (
    "one more toolkit module to load (repeatable), beside the built-in toolkits, "
    "$HOPGRAPH_TOOLKITS and the project's [tool.hopgraph] toolkits"
)
