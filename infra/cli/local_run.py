"""``hopgraph run FILE --local``: a graph run in this process, no stack, no AWS."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console

from engine.errors import GraphValidationError, HopgraphError
from engine.runner import InProcessRunner
from engine.tools import load_toolkits
from engine.validation import build_graph
from infra.cli.progress import RunProgress


def run_local(
    doc: Any,
    source: str,
    state: dict[str, Any],
    toolkits: list[str],
    max_steps: int | None,
    console: Console,
    as_json: bool,
    subgraphs: dict[str, Any] | None = None,
) -> int:
    """Run the graph ``doc`` (read from ``source``) to the end in-process; 0 when the run
    completes, else 1 (2: bad input). With ``as_json`` stdout is the result's JSON alone: the
    steps and any error go to stderr. ``subgraphs``: the graphs subgraph nodes name, by the
    file each was read from (each named by its graph's name)."""
    if as_json:
        console = Console(stderr=True)
    given = source
    try:
        tools = load_toolkits([t.strip() for t in toolkits if t.strip()])
        named = {}
        for where, child in (subgraphs or {}).items():
            source = where
            built = build_graph(child, tools.names(), toolkit=tools)
            named[built.name] = built
        source = given
        graph = build_graph(doc, tools.names(), toolkit=tools)
    except GraphValidationError as exc:
        console.print(f"[red]error:[/] {source} is not a valid graph:", highlight=False)
        for problem in exc.problems:
            console.print(f"  {problem.location}: {problem.message}", highlight=False)
        return 2
    except (ValueError, HopgraphError, ImportError) as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        return 2
    from engine.streams import channel

    progress = RunProgress(console, show_state=not as_json)

    def tokens(_run: str, events: list[dict[str, Any]], _audience: Any = None) -> None:
        for event in events:
            progress.event(event)

    channel.bind(tokens)  # a streaming model node's text, as it writes
    runner = InProcessRunner(tools, on_event=progress.event, subgraphs=named)
    try:
        with progress:
            result = runner.run(graph, state, max_steps=max_steps)
    except GraphValidationError as exc:  # its subgraphs: one missing, or a cycle
        for problem in exc.problems:
            console.print(f"[red]error:[/] {problem.location}: {problem.message}", highlight=False)
        return 2
    if as_json:
        print(
            json.dumps(
                {
                    "run_id": result.run_id,
                    "status": result.status,
                    "state": result.state,
                    "steps": result.steps,
                    "error": result.error,
                    "log": result.log,
                },
                default=str,
            )
        )
    return 0 if result.status == "completed" else 1
