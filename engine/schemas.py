"""A tool's input schema (the JSON schema a model sees), from what the tool declares.

``@tk.tool(input=X)`` or the type hint of the tool's first parameter, where ``X`` is:

- a pydantic model (anything with ``model_json_schema``): its schema, and the model's
  ``model_validate`` checks what a model passes before the tool runs;
- a ``TypedDict`` or a dataclass: a schema from its annotations (str, int, float, bool,
  lists, dicts, ``Literal``, optional fields);
- a JSON schema (a dict with ``"type": "object"``), as is.

A tool whose first parameter is the usual ``Mapping[str, Any]`` state has no input schema:
it is a node's tool, never offered to a model.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Mapping
from typing import Any

from engine.errors import HopgraphError

_SCALARS: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


class SchemaError(HopgraphError):
    """A tool's declared input cannot be turned into a JSON schema."""


def input_schema(fn: Any, declared: Any = None) -> tuple[Mapping[str, Any] | None, Any]:
    """``(schema, pydantic model or None)`` for a tool ``fn`` and its ``input=``."""
    spec = declared if declared is not None else _first_hint(fn)
    if spec is None:
        return None, None
    if isinstance(spec, Mapping):
        if spec.get("type") != "object":
            raise SchemaError('an input schema describes an object: {"type": "object", ...}')
        return dict(spec), None
    if hasattr(spec, "model_json_schema"):
        return spec.model_json_schema(), spec
    if typing.is_typeddict(spec):
        hints = typing.get_type_hints(spec)
        required = sorted(getattr(spec, "__required_keys__", hints))
        return _object(hints, [k for k in hints if k in required]), None
    if dataclasses.is_dataclass(spec) and isinstance(spec, type):
        hints = typing.get_type_hints(spec)
        required = [
            f.name
            for f in dataclasses.fields(spec)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        return _object({f.name: hints[f.name] for f in dataclasses.fields(spec)}, required), None
    if declared is not None:
        raise SchemaError(
            f"input= takes a pydantic model, a TypedDict, a dataclass or a JSON "
            f"schema, not {spec!r}"
        )
    return None, None


def _first_hint(fn: Any) -> Any:
    try:
        params = list(inspect.signature(fn).parameters.values())
        hints = typing.get_type_hints(fn)
    except (TypeError, ValueError, NameError, AttributeError):  # hints it cannot resolve
        return None
    if not params:
        return None
    hint = hints.get(params[0].name)
    if hint is None:
        return None
    plain = hasattr(hint, "model_json_schema") or typing.is_typeddict(hint)
    return hint if plain or (dataclasses.is_dataclass(hint) and isinstance(hint, type)) else None


def _object(fields: Mapping[str, Any], required: list[str]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": "object",
        "properties": {name: _type(hint) for name, hint in fields.items()},
    }
    if required:
        doc["required"] = required
    return doc


def _type(hint: Any) -> dict[str, Any]:
    if hint in _SCALARS:
        return {"type": _SCALARS[hint]}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        kept = [a for a in args if a is not type(None)]
        return _type(kept[0]) if len(kept) == 1 else {"anyOf": [_type(a) for a in kept]}
    if hint is list or origin is list:
        return {"type": "array", "items": _type(args[0])} if args else {"type": "array"}
    if hint is dict or origin in (dict, Mapping):
        return {"type": "object"}
    if typing.is_typeddict(hint):
        return _object(typing.get_type_hints(hint), sorted(hint.__required_keys__))
    return {}
