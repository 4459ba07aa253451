"""Write conflicts caught at creation: tasks that may run in one superstep and write the same
state key that has no reducer.

Only what tools declare (``writes``) can be checked before a run; a conflict between tools
that declare nothing is caught when it happens, by :func:`engine.superstep.merge_updates`.
Two kinds of tasks are certain to share a superstep: the targets of one fan-out, and the
item tasks of one map node.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from itertools import combinations

from engine.errors import Problem
from engine.graph import END, Graph, Targets


def check_parallel_writes(
    graph: Graph, writes: Mapping[str, Collection[str]], locations: Mapping[str, str]
) -> list[Problem]:
    """A problem for every key two parallel tasks would both write without a reducer."""

    def unreduced(node: str) -> set[str]:
        return set(writes.get(graph.nodes[node].tool, ())) - set(graph.reducers)

    problems: list[Problem] = []
    for node in graph.nodes.values():
        keys = unreduced(node.id) if node.map is not None else set()
        if keys:
            problems.append(Problem(f"{locations[node.id]}.map", _advice(
                keys, f"every item's task of map node {node.id!r} writes")))  # fmt: skip
    for source, targets in _fan_outs(graph):
        for a, b in combinations(targets, 2):
            keys = unreduced(a) & unreduced(b)
            if keys:
                problems.append(Problem(locations[source], _advice(
                    keys, f"the fan-out out of {source!r} runs {a!r} and {b!r} together; both write"
                )))  # fmt: skip
    return problems


def _fan_outs(graph: Graph) -> Iterator[tuple[str, Targets]]:
    for source, targets in graph.edges.items():
        if len(targets) > 1:
            yield source, targets
    for source, branch in graph.branches.items():
        routes = [c.targets for c in branch.cases] + [branch.default or ()]
        for targets in routes:
            if len(targets) > 1 and END not in targets:
                yield source, targets


def _advice(keys: set[str], what: str) -> str:
    key = sorted(keys)[0]
    listed = ", ".join(repr(k) for k in sorted(keys))
    return (
        f"{what} {listed} with no reducer, so one update would be lost; declare how they "
        f'merge, e.g. "state": {{"{key}": {{"reducer": "append"}}}}'
    )
