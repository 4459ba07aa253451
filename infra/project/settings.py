"""A project's settings: the ``[tool.hopgraph]`` table of its ``pyproject.toml``.

::

    [tool.hopgraph]
    toolkits = ["my_project.tools"]                # loaded beside the built-in toolkits
    graphs = ["my_project.graphs:review", "graphs/triage.json"]   # what `graphs push` sends
    api = "https://abc123.execute-api.eu-west-1.amazonaws.com"    # default --api (optional)
    ws = "wss://def456.execute-api.eu-west-1.amazonaws.com/prod"  # default --ws (optional)

The project is the nearest folder, from the current one upwards, whose ``pyproject.toml`` has
a ``[tool.hopgraph]`` table. Its folder goes on ``sys.path``, so its modules import without
``PYTHONPATH``.
"""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUILTIN_TOOLKITS = (
    "engine.toolkits.code_review",
    "engine.toolkits.basics",
    "engine.toolkits.research",
    "functions.models.toolkit",
)
"""Loaded by every local run and the local stack; a project's and ``--toolkit``'s add to them."""

KEYS = {"toolkits", "graphs", "api", "ws"}


class ProjectError(ValueError):
    """A project's settings cannot be used; the message says what to fix, and where."""


@dataclass(frozen=True)
class Project:
    root: Path
    name: str
    toolkits: tuple[str, ...] = ()
    graphs: tuple[str, ...] = ()
    api: str | None = None
    ws: str | None = None
    requirements: tuple[str, ...] = field(default=())
    """The project's ``[project] dependencies``, hopgraph itself left out."""

    @property
    def packages(self) -> tuple[str, ...]:
        """The top-level packages of its toolkits and graph modules: what ships to Lambda."""
        refs = [*self.toolkits, *(g.split(":", 1)[0] for g in self.graphs if ":" in g)]
        return tuple(dict.fromkeys(ref.split(".", 1)[0] for ref in refs))


def find_project(start: Path | None = None) -> Project | None:
    """The project the folder ``start`` (default: the current one) is in, if any."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            doc = _read(pyproject)
            table = doc.get("tool", {}).get("hopgraph")
            if table is not None:
                return _project(folder, doc, table, pyproject)
    return None


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ProjectError(f"{path}: {exc}") from None


def _project(root: Path, doc: dict[str, Any], table: Any, path: Path) -> Project:
    where = f"{path} [tool.hopgraph]"
    if not isinstance(table, dict):
        raise ProjectError(f"{where} must be a table")
    unknown = sorted(set(table) - KEYS)
    if unknown:
        from engine.keys import did_you_mean

        raise ProjectError(f"{where}: unknown key {unknown[0]!r}{did_you_mean(unknown[0], KEYS)}"
                           f"; it has {', '.join(sorted(KEYS))}")  # fmt: skip
    lists = {key: _strings(table.get(key, []), f"{where} {key}") for key in ("toolkits", "graphs")}
    for key in ("api", "ws"):
        if not isinstance(table.get(key, ""), str):
            raise ProjectError(f"{where} {key} must be a string (a URL)")
    project = doc.get("project", {})
    deps = _strings(project.get("dependencies", []), f"{path} [project] dependencies")
    return Project(
        root=root,
        name=str(project.get("name", root.name)),
        toolkits=lists["toolkits"],
        graphs=lists["graphs"],
        api=table.get("api") or None,
        ws=table.get("ws") or None,
        requirements=tuple(d for d in deps if not _is_hopgraph(d)),
    )


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ProjectError(f"{where} must be a list of strings")
    return tuple(value)


def _is_hopgraph(requirement: str) -> bool:
    name = requirement.split(";")[0].strip()
    for stop in "<>=!~[ @":
        name = name.split(stop)[0]
    return name.lower().replace("_", "-") == "hopgraph"


def activate(project: Project | None) -> None:
    """Put the current folder and the project's on ``sys.path`` (first), as ``python -m`` does,
    so that its toolkits and graph modules import."""
    for folder in [Path.cwd(), *([project.root] if project else [])]:
        path = str(folder)
        if path not in sys.path:
            sys.path.insert(0, path)


def toolkit_modules(
    project: Project | None, extra: Iterable[str] = (), environment: str | None = None
) -> list[str]:
    """Every toolkit to load: the built-ins, ``$HOPGRAPH_TOOLKITS``, the project's, then
    ``--toolkit``'s, each once."""
    names = [*BUILTIN_TOOLKITS, *(environment or "").split(",")]
    names += [*(project.toolkits if project else ()), *extra]
    return list(dict.fromkeys(n.strip() for n in names if n.strip()))
