"""``hopgraph graphs push``: every graph of the project, created or reused by its content."""

from __future__ import annotations

from typing import Any, Protocol

from infra.cli.client import HopgraphClient
from infra.cli.inputs import UsageError
from infra.project.graphs import load_graph
from infra.project.settings import Project


class _Output(Protocol):
    as_json: bool

    def say(self, text: str) -> None: ...

    def data(self, value: Any) -> None: ...


def push_graphs(project: Project | None, out: _Output, client: HopgraphClient) -> int:
    if project is None:
        raise UsageError(
            "no project here: push sends the graphs a pyproject.toml lists in [tool.hopgraph] "
            "graphs (start one with `hopgraph init DIR`), or use `hopgraph graphs create GRAPH`"
        )
    if not project.graphs:
        raise UsageError(f"{project.root / 'pyproject.toml'} lists no graphs ([tool.hopgraph])")
    pushed = []
    for ref in project.graphs:
        target = ref if ":" in ref else str(project.root / ref)
        graph, created = client.find_or_create_graph(load_graph(target))
        pushed.append({"graph": ref, "graph_id": graph["graph_id"], "created": created})
        if not out.as_json:
            verb = "created" if created else "reused "
            out.say(f"{verb} [bold]{graph['graph_id']}[/]  {ref}")
    if out.as_json:
        out.data(pushed)
    return 0
