"""Mermaid rendering: every node, edge and branch, with labels Mermaid can read."""

from __future__ import annotations

import re
from typing import Any

from engine.graph import Graph
from engine.mermaid import ERROR_LINK_STYLE, to_mermaid
from engine.validation import build_graph


def graph_of(doc: dict[str, Any]) -> Graph:
    return build_graph(doc)


def test_a_loop_renders_as_a_flowchart() -> None:
    # Given a loop with a branch and a default
    graph = graph_of(
        {
            "entry": "fetch",
            "nodes": {"fetch": {"tool": "fetch_source"}, "score": {"tool": "score"}},
            "edges": {"fetch": "score"},
            "branches": {
                "score": {"cases": [{"when": "quality >= 7", "to": "END"}], "default": "fetch"}
            },
        }
    )
    # When rendered, Then this is the whole text
    assert to_mermaid(graph) == (
        "flowchart TD\n"
        "    __start__([start])\n"
        "    __end__([end])\n"
        '    fetch["fetch<br/><i>fetch_source</i>"]\n'
        '    score["score<br/><i>score</i>"]\n'
        "    __start__ --> fetch\n"
        "    fetch --> score\n"
        '    score -->|"quality >= 7"| __end__\n'
        "    score -->|else| fetch\n"
    )


def test_cases_are_listed_in_order_and_a_branch_without_default_has_no_else() -> None:
    graph = graph_of(
        {
            "entry": "a",
            "nodes": {"a": {"tool": "t"}, "b": {"tool": "t"}},
            "edges": {"b": "end"},
            "branches": {
                "a": {"cases": [{"when": "n > 9", "to": "END"}, {"when": "n > 1", "to": "b"}]}
            },
        }
    )
    lines = to_mermaid(graph).splitlines()
    assert lines[-3:] == [
        "    b --> __end__",
        '    a -->|"n > 9"| __end__',
        '    a -->|"n > 1"| b',
    ]
    assert not any("else" in line for line in lines)


def test_quotes_pipes_and_html_in_labels_are_entity_codes() -> None:
    # Given a condition holding every character that would end or corrupt a label
    when = "tag == \"a|b\" and note != '#amp;' and x <y"
    graph = graph_of(
        {
            "entry": "a",
            "nodes": {"a": {"tool": "t&t"}},
            "branches": {"a": {"cases": [{"when": when, "to": "END"}], "default": "a"}},
        }
    )
    text = to_mermaid(graph)
    # Then each is written as a Mermaid entity code
    assert (
        "    a -->|\"tag == #quot;a#124;b#quot; and note != '#35;amp;' and x #lt;y\"| __end__"
        in text
    )
    assert '    a["a<br/><i>t#amp;t</i>"]' in text


def test_node_ids_mermaid_cannot_read_get_generated_ids_and_keep_their_names() -> None:
    # Given node ids with a space, a Mermaid keyword, and one that looks like a generated id
    graph = graph_of(
        {
            "entry": "review code",
            "nodes": {
                "review code": {"tool": "t"},
                "style": {"tool": "t"},
                "node_0": {"tool": "t"},
                "x-ray": {"tool": "t"},
            },
            "edges": {"review code": "style", "style": "node_0", "node_0": "x-ray", "x-ray": "END"},
        }
    )
    text = to_mermaid(graph)
    # Then every Mermaid id is a plain word, unique, and no keyword
    ids = re.findall(r"^    (\w+)\[", text, flags=re.MULTILINE)
    assert len(ids) == len(set(ids)) == 4
    assert "style" not in ids and "node_0" in ids
    # And the real names are in the labels, and the edges join the generated ids
    labels = dict(re.findall(r'^    (\w+)\["(.*?)<br/>', text, flags=re.MULTILINE))
    by_name = {name: mermaid_id for mermaid_id, name in labels.items()}
    assert set(by_name) == {"review code", "style", "node_0", "x-ray"}
    assert f"    __start__ --> {by_name['review code']}" in text
    assert f"    {by_name['review code']} --> {by_name['style']}" in text
    assert f"    {by_name['style']} --> node_0" in text
    assert f"    node_0 --> {by_name['x-ray']}" in text
    assert f"    {by_name['x-ray']} --> __end__" in text


def test_every_edge_of_a_graph_is_drawn_once() -> None:
    names = [f"step{i}" for i in range(6)]
    edges = dict(zip(names, [*names[1:], "END"], strict=True))
    graph = graph_of({"entry": "step0", "nodes": {n: {"tool": "t"} for n in names}, "edges": edges})
    arrows = [line for line in to_mermaid(graph).splitlines() if "-->" in line]
    assert len(arrows) == len(names) + 1  # the start arrow and one per edge


def test_a_newline_in_a_node_id_or_condition_starts_no_statement() -> None:
    # Given a node id, a tool name and a condition holding line breaks and statements
    evil = 'a\nclick a href "https://evil.example"\r\n\u2028style a fill:red'
    graph = graph_of(
        {
            "entry": evil,
            "nodes": {evil: {"tool": "t\nclass a b"}},
            "branches": {evil: {"cases": [{"when": "(x\n== 1)", "to": "END"}], "default": evil}},
        }
    )
    # When it is rendered
    text = to_mermaid(graph)
    lines = text.splitlines()
    # Then every line is one of the statements the renderer writes, nothing more
    assert len(lines) == 7
    assert all(line.startswith("    ") for line in lines[1:])
    assert not any(line.lstrip().startswith(("click", "style", "class")) for line in lines)
    assert "\u2028" not in text and "\r" not in text
    # And the id stays readable in its label, each break as an entity code
    assert "a#10;click a href #quot;https://evil.example#quot;#13;#10;#8232;style" in text


def test_an_error_route_is_a_red_dotted_arrow_labelled_on_error() -> None:
    # Given a node that retries and goes to an apology once its attempts are spent or it
    # times out, and a chain on both sides
    graph = graph_of(
        {
            "entry": "fetch",
            "nodes": {
                "fetch": {"tool": "fetch_source", "retry": {"max_attempts": 2},
                          "timeout_s": 5, "on_error": "sorry"},
                "score": {"tool": "score", "on_error": "sorry"},
                "sorry": {"tool": "apologise"},
            },
            "edges": {"fetch": "score", "score": "END", "sorry": "END"},
        }
    )  # fmt: skip
    # When rendered
    lines = to_mermaid(graph).splitlines()
    # Then each error route is one dotted arrow labelled "on error", after the graph's own
    # arrows, and a linkStyle colours exactly those links (counted from the start arrow)
    links = [line.strip() for line in lines if "->" in line]
    assert links[-2:] == ['fetch -.->|"on error"| sorry', 'score -.->|"on error"| sorry']
    assert lines[-1] == f"    linkStyle {len(links) - 2},{len(links) - 1} {ERROR_LINK_STYLE}"
    # And a graph without error routes has no linkStyle
    plain = graph_of({"entry": "a", "nodes": {"a": {"tool": "t"}}, "edges": {"a": "END"}})
    assert "linkStyle" not in to_mermaid(plain)
