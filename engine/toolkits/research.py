"""Tools a model may call in the research agent example (examples/research_agent.json):
a keyword search over a small corpus of documents, and a calculator.

Both declare their input (a TypedDict), so a model node can offer them; each is an ordinary
tool too: the run's tool node calls it with the model's input as its state.
"""

from __future__ import annotations

import ast
import json
import operator
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, TypedDict

from engine.tools import ToolContext, Toolkit

toolkit = Toolkit("research")
CORPORA = Path(__file__).resolve().parent
"""Where corpora are read from: beside this module, wherever it is installed (the engine
layer on Lambda, /opt/python/engine/toolkits/), never the process's working directory."""
DEFAULT_CORPUS = "research_corpus.json"
MAX_EXPRESSION = 200


class SearchInput(TypedDict):
    query: str


class CalculatorInput(TypedDict):
    expression: str


@toolkit.tool
def search_docs(args: SearchInput, ctx: ToolContext) -> dict[str, Any]:
    """Search the document corpus by keywords; returns the best matching documents.

    The corpus is the JSON list of ``{"title", "text"}`` that ``settings["corpus"]`` names, a
    file beside this module (default research_corpus.json)."""
    corpus = _corpus(str(ctx.settings.get("corpus", DEFAULT_CORPUS)))
    words = set(re.findall(r"[a-z0-9]+", args["query"].lower()))
    scored = []
    for doc in corpus:
        found = set(re.findall(r"[a-z0-9]+", f"{doc['title']} {doc['text']}".lower()))
        score = len(words & found)
        if score:
            scored.append((-score, doc["title"], doc))
    return {"results": [doc for _, _, doc in sorted(scored)[:2]]}


def corpus_path(name: str) -> Path:
    """The corpus file ``name`` names: a JSON file in :data:`CORPORA`, nothing else (a graph
    names it, and a graph may not read the worker's other files)."""
    path = (CORPORA / name).resolve()
    if path.parent != CORPORA or path.suffix != ".json":
        raise ValueError(f"corpus {name!r}: name a JSON file beside {CORPORA.name}/research.py")
    return path


@lru_cache(maxsize=8)
def _corpus(name: str) -> list[dict[str, str]]:
    return list(json.loads(corpus_path(name).read_text()))


_OPS: Mapping[type, Callable[..., Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


@toolkit.tool
def calculator(args: CalculatorInput, ctx: ToolContext) -> dict[str, Any]:
    """Evaluate an arithmetic expression (+, -, *, /, %, parentheses)."""
    expression = args["expression"]
    if len(expression) > MAX_EXPRESSION:
        raise ValueError(f"an expression is at most {MAX_EXPRESSION} characters")
    value = _eval(ast.parse(expression, mode="eval").body)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return {"result": value}


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_eval(node.left), _eval(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_eval(node.operand))
    raise ValueError(f"not arithmetic: {ast.dump(node)[:80]}")
