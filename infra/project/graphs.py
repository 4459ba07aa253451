"""A graph named on the command line: a JSON file, or ``module:attribute`` (a builder graph,
a validated graph or a dict in a Python module of the project)."""

from __future__ import annotations

import importlib
import re
from typing import Any

from engine.builder import graph_document
from infra.cli.inputs import UsageError, names_a_file, read_json_file

_REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def is_module_reference(target: str) -> bool:
    """``my_project.graphs:review``: a module and an attribute, not a path or an id."""
    return bool(_REFERENCE.match(target)) and not names_a_file(target)


def load_graph(target: str) -> dict[str, Any]:
    """The JSON document of the graph ``target`` names (a file, or ``module:attribute``)."""
    if not is_module_reference(target):
        document: dict[str, Any] = read_json_file(target)
        return document
    module_name, attribute = target.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import {module_name!r} for {target}: {exc}") from None
    if not hasattr(module, attribute):
        raise UsageError(f"module {module_name!r} has no {attribute!r} (for {target})")
    try:
        return graph_document(getattr(module, attribute))
    except TypeError as exc:
        raise UsageError(f"{target} is {exc}") from None
