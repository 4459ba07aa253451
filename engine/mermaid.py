"""Mermaid flowchart text for a graph: branches labelled with their conditions, a fan-out
as one arrow per target, a map node as a subroutine box naming its list, the nodes a join
waits for as dotted arrows labelled ``join``, a router's and a Command's possible targets as
dotted arrows labelled with the router (or ``goto``), a node's error route (``on_error``, where
it goes once its retries are spent or a timeout fails it) as a dotted arrow labelled
``on error`` and drawn in red, and a deferred node's label saying so."""

from __future__ import annotations

import re

from engine.graph import END, Graph

ERROR_LINK_STYLE = "stroke:#c0392b,color:#c0392b"
"""How an error route's arrow is drawn (Mermaid's ``linkStyle``): red, beside its dots."""
_START = "__start__"
_END = "__end__"
# Node ids are the client's strings; Mermaid ids are not. An id that is not a plain word, or
# is a word Mermaid reads as a statement ("style", "class"...), gets a generated Mermaid id
# (its real name stays in the label), so any valid graph renders.
_PLAIN_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEYWORDS = frozenset(
    {"end", "graph", "flowchart", "subgraph", "direction", "style", "classdef", "class",
     "click", "linkstyle", "call", "href", "callback", "default", _START, _END}
)  # fmt: skip


# Characters that end a Mermaid statement or a line, or hide text (controls, line and
# paragraph separators, bidi overrides): written as entity codes, so a node id, tool name or
# condition can never start a statement of its own (`a\nclick a href "..."`).
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")


def _label(text: str) -> str:
    # Mermaid has no backslash escapes; it takes HTML entity codes inside quoted labels.
    # "#" first, since the codes start with it; "<" could open an HTML tag (`x <y`).
    text = (
        text.replace("#", "#35;")
        .replace("&", "#amp;")
        .replace('"', "#quot;")
        .replace("|", "#124;")
        .replace("<", "#lt;")
    )
    return _UNSAFE.sub(lambda m: f"#{ord(m.group())};", text)


def mermaid_ids(graph: Graph) -> dict[str, str]:
    """Each node's id in the Mermaid text (``END``'s too): the node's own name when Mermaid
    takes it as an id, else a generated ``node_N``. Clients that style a drawn node need it."""
    ids = {END: _END}
    taken = set(graph.nodes)
    counter = 0
    for node in graph.nodes:
        if _PLAIN_ID.fullmatch(node) and node.lower() not in _KEYWORDS:
            ids[node] = node
            continue
        while f"node_{counter}" in taken:
            counter += 1
        ids[node] = f"node_{counter}"
        taken.add(ids[node])
    return ids


def to_mermaid(graph: Graph) -> str:
    """Render ``graph`` as a Mermaid ``flowchart TD``."""
    ref = mermaid_ids(graph)
    lines = ["flowchart TD", f"    {_START}([start])", f"    {_END}([end])"]
    for node in graph.nodes.values():
        text = f"{_label(node.id)}<br/><i>{_label(node.tool)}</i>"
        if node.defer:
            text += "<br/>deferred"
        if node.map is None:
            lines.append(f'    {ref[node.id]}["{text}"]')
        else:
            each = f"for each {_label(node.map.as_)} in {_label(node.map.over)}"
            lines.append(f'    {ref[node.id]}[["{text}<br/>{each}"]]')
    first_link = len(lines)
    lines.append(f"    {_START} --> {ref[graph.entry]}")
    for source, targets in graph.edges.items():
        lines.extend(f"    {ref[source]} --> {ref[t]}" for t in targets)
    for source, branch in graph.branches.items():
        for case in branch.cases:
            label = _label(case.condition.source)
            lines.extend(f'    {ref[source]} -->|"{label}"| {ref[t]}' for t in case.targets)
        for target in branch.default or ():
            lines.append(f"    {ref[source]} -->|else| {ref[target]}")
        if branch.router is not None:
            label = _label(branch.router)
            lines.extend(f'    {ref[source]} -.->|"{label}"| {ref[t]}' for t in branch.to)
    for node in graph.nodes.values():
        lines.extend(f"    {ref[node.id]} -.->|goto| {ref[t]}" for t in node.goto)
    for join, sources in graph.joins.items():
        lines.extend(f"    {ref[s]} -.->|join| {ref[join]}" for s in sources)
    links = len(lines) - first_link  # every line from the start arrow on is one link
    errors = [n for n in graph.nodes.values() if n.failure.on_error is not None]
    lines.extend(
        f'    {ref[n.id]} -.->|"on error"| {ref[n.failure.on_error or END]}' for n in errors
    )
    if errors:
        drawn = ",".join(str(links + i) for i in range(len(errors)))
        lines.append(f"    linkStyle {drawn} {ERROR_LINK_STYLE}")
    return "\n".join(lines) + "\n"
