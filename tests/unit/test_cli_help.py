"""``hopgraph --help`` at every level: a description, every argument explained, an example,
no reST backticks, and only the options that the command uses."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from infra.cli.main import build_parser


def every_parser(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """The top-level parser and each command's and action's, with the words that reach it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from every_parser(child, (*path, name))


PARSERS = dict(every_parser(build_parser()))


def options_of(path: tuple[str, ...]) -> set[str]:
    return {o for a in PARSERS[path]._actions for o in a.option_strings}


@pytest.mark.parametrize("path", PARSERS, ids=lambda p: " ".join(("hopgraph", *p)))
def test_every_level_has_a_description_an_example_and_no_backticks(
    path: tuple[str, ...],
) -> None:
    # Given one level of the command line
    parser = PARSERS[path]
    # When its help is printed
    text = parser.format_help()
    # Then it says what the command does, explains every argument and shows an example
    assert parser.description, path
    examples = text.split("examples:\n", 1)[1].splitlines()
    assert examples and examples[0].startswith("  hopgraph "), text
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            assert action.help, (path, action.dest)
    # And nothing in it is reST markup
    assert "`" not in text, text


@pytest.mark.parametrize(
    ("path", "has", "has_not"),
    [
        (("dev",), {"--port", "--dispatch"}, {"--api", "--ws", "--json"}),
        (("graphs", "create"), {"--api", "--json"}, {"--ws", "--mermaid", "--toolkit"}),
        (("graphs", "show"), {"--mermaid"}, {"--ws"}),
        (("runs", "list"), {"--status", "--graph-id"}, {"--ws", "--timeout"}),
        (("runs", "logs"), {"--api", "--json"}, {"--ws", "--status"}),
        (("runs", "follow"), {"--api", "--ws", "--timeout"}, {"--local"}),
        (("run",), {"--ws", "--follow", "--local", "--toolkit"}, {"--status", "--mermaid"}),
        (("tools",), {"--api", "--json"}, {"--ws"}),
    ],
)
def test_a_command_lists_only_its_own_options(
    path: tuple[str, ...], has: set[str], has_not: set[str]
) -> None:
    # Given a command's parser
    # When its options are listed
    options = options_of(path)
    # Then those it uses are there, and no others
    assert has <= options, options
    assert not has_not & options, has_not & options


def test_an_option_of_another_command_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    # Given a command that does not follow runs
    # When it is given --ws after it
    with pytest.raises(SystemExit) as exit:
        build_parser().parse_args(["runs", "list", "--ws", "ws://example.test"])
    # Then it is a usage error that names the option
    assert exit.value.code == 2
    assert "unrecognized arguments: --ws" in capsys.readouterr().err


def test_options_before_the_command_still_apply() -> None:
    # Given --api and --json before the command, as scripts write them
    args = build_parser().parse_args(["--api", "http://a.test", "--json", "runs", "list"])
    # Then the command sees them
    assert (args.api, args.json) == ("http://a.test", True)
    # And the same options after the command win
    later = build_parser().parse_args(["--api", "http://a.test", "tools", "--api", "http://b.test"])
    assert later.api == "http://b.test"
