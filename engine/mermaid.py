"""Mermaid flowchart text for a graph, branches labelled with their conditions."""

from __future__ import annotations

from engine.graph import END, Graph

_START = "__start__"
_END = "__end__"


def _label(text: str) -> str:
    # Mermaid has no backslash escapes; it takes HTML entity codes inside quoted labels.
    return text.replace("&", "#amp;").replace('"', "#quot;").replace("|", "#124;")


def _ref(node: str) -> str:
    return _END if node == END else node


def to_mermaid(graph: Graph) -> str:
    """Render ``graph`` as a Mermaid ``flowchart TD``."""
    lines = ["flowchart TD", f"    {_START}([start])", f"    {_END}([end])"]
    for node in graph.nodes.values():
        lines.append(f'    {node.id}["{_label(node.id)}<br/><i>{_label(node.tool)}</i>"]')
    lines.append(f"    {_START} --> {graph.entry}")
    for source, target in graph.edges.items():
        lines.append(f"    {source} --> {_ref(target)}")
    for source, branch in graph.branches.items():
        for case in branch.cases:
            label = _label(case.condition.source)
            lines.append(f'    {source} -->|"{label}"| {_ref(case.target)}')
        if branch.default is not None:
            lines.append(f"    {source} -->|else| {_ref(branch.default)}")
    return "\n".join(lines) + "\n"
