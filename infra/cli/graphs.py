"""``hopgraph graphs`` and ``hopgraph tools``: what a stack holds."""

from __future__ import annotations

import argparse

from infra.cli.client import HopgraphClient
from infra.cli.output import Output
from infra.cli.parsing import Subcommands, api_options, subcommand
from infra.cli.tables import GRAPHS, TOOLS, first_sentence
from infra.project.graphs import load_graph
from infra.project.settings import find_project


def add_graphs(sub: Subcommands[argparse.ArgumentParser]) -> None:
    graphs = subcommand(
        sub,
        "graphs",
        "create, list and show graphs",
        "Create, list and show graphs. A graph is immutable: its id always means the\n"
        "same definition.",
        "  hopgraph graphs create examples/code_review.json\n  hopgraph graphs list\n"
        "  hopgraph graphs push",
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    create = subcommand(
        graphs,
        "create",
        "create a graph from a JSON file or a Python module",
        "Create a graph from a JSON file, in any accepted dialect, or from a graph in a\n"
        "Python module (MODULE:NAME, a StateGraph of engine.builder), and print its id.\n"
        "A graph with the same content that exists already is reused, not copied.",
        "  hopgraph graphs create examples/code_review.json\n"
        "  hopgraph graphs create my_project.graphs:review",
        (api_options(),),
    )
    create.add_argument("file", metavar="GRAPH", help="a graph JSON file, or MODULE:NAME")
    subcommand(
        graphs,
        "push",
        "create every graph of the project",
        "Create every graph the project's pyproject.toml lists ([tool.hopgraph] graphs),\n"
        "each reused if a graph with the same content exists, and print their ids.",
        "  hopgraph graphs push\n  hopgraph graphs push --api https://abc.execute-api...",
        (api_options(),),
    )
    subcommand(
        graphs,
        "list",
        "list graphs",
        "List the graphs, newest first.",
        "  hopgraph graphs list\n  hopgraph graphs list --json",
        (api_options(),),
    )
    show = subcommand(
        graphs,
        "show",
        "show a graph",
        "Show a graph's canonical definition (JSON), or draw it as a Mermaid flowchart.",
        "  hopgraph graphs show GRAPH_ID\n  hopgraph graphs show GRAPH_ID --mermaid",
        (api_options(),),
    )
    show.add_argument("graph_id", metavar="GRAPH_ID", help="the graph's id (g_...)")
    show.add_argument("--mermaid", action="store_true", help="print Mermaid flowchart text")


def add_tools(sub: Subcommands[argparse.ArgumentParser]) -> None:
    subcommand(
        sub,
        "tools",
        "list the registered tools",
        "List the tools that graph nodes can call, with what each does.",
        "  hopgraph tools\n  hopgraph tools --json",
        (api_options(),),
    )


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


def cmd_tools(args: argparse.Namespace, out: Output, client: HopgraphClient) -> int:
    tools = client.tools()
    if not out.as_json:  # descriptions are docstrings: their reST ``literals`` read as plain,
        tools = [  # and their first sentence is their summary (a table row is one line)
            {**t, "description": first_sentence(str(t.get("description", "")).replace("``", ""))}
            for t in tools
        ]
    out.table(tools, TOOLS)
    return 0
