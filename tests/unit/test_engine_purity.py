"""engine/ stays pure: no AWS SDK, no Powertools, no process environment.

The ruff banned-api rule in engine/ruff.toml says the same at lint time; this test also
catches what a linter configuration can lose (an import hidden in a function, a missed file)
and checks what importing the engine actually loads.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "engine"
BANNED_MODULES = ("boto3", "botocore", "aws_lambda_powertools")
BANNED_OS = ("environ", "getenv", "putenv", "unsetenv", "environb")
ENGINE_FILES = sorted(p for p in ENGINE.rglob("*.py") if ".ruff_cache" not in p.parts)


def _banned_module(name: str) -> bool:
    return any(name == banned or name.startswith(banned + ".") for banned in BANNED_MODULES)


def violations(source: str) -> list[str]:
    """Each use of something engine/ must not touch, as ``line: what``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [
                f"{node.lineno}: import {a.name}" for a in node.names if _banned_module(a.name)
            ]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if _banned_module(node.module):
                found.append(f"{node.lineno}: from {node.module} import ...")
            elif node.module == "os":
                found += [
                    f"{node.lineno}: from os import {a.name}"
                    for a in node.names
                    if a.name in BANNED_OS
                ]
        elif isinstance(node, ast.Attribute) and node.attr in BANNED_OS and _is_os(node.value):
            found.append(f"{node.lineno}: os.{node.attr}")
        if isinstance(node, ast.Call) and _literal_banned(node):
            # __import__("boto3"), importlib.import_module("boto3.session")
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name in ("__import__", "import_module"):
                found.append(f"{node.lineno}: {name}({ast.literal_eval(node.args[0])!r})")
    return found


def _is_os(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "os"


def _literal_banned(call: ast.Call) -> bool:
    first = call.args[0] if call.args else None
    return (
        isinstance(first, ast.Constant)
        and isinstance(first.value, str)
        and _banned_module(first.value)
    )


def test_the_engine_has_python_files_to_check() -> None:
    names = {p.relative_to(ENGINE).as_posix() for p in ENGINE_FILES}
    assert {"service.py", "protocol.py", "runner.py", "ports.py"} <= names
    assert any(name.startswith("toolkits/") for name in names)


@pytest.mark.parametrize("path", ENGINE_FILES, ids=lambda p: p.relative_to(ENGINE).as_posix())
def test_no_engine_file_uses_aws_or_the_environment(path: Path) -> None:
    assert violations(path.read_text()) == []


@pytest.mark.parametrize(
    "source",
    [
        "import boto3",
        "import botocore.exceptions as e",
        "from aws_lambda_powertools import Logger",
        "from boto3.dynamodb.conditions import Key",
        "import os\nx = os.environ['A']",
        "import os\nx = os.getenv('A')",
        "from os import environ",
        "def f():\n    import boto3",
        "m = __import__('botocore')",
        "import importlib\nm = importlib.import_module('boto3.session')",
    ],
)
def test_the_checker_catches_each_banned_use(source: str) -> None:
    assert violations(source) != []


@pytest.mark.parametrize(
    "source",
    ["import os.path", "from os import path", "import boto3_stubs_like_name", "x = environ"],
)
def test_the_checker_lets_harmless_code_through(source: str) -> None:
    assert violations(source) == []


def test_importing_the_engine_loads_no_aws_sdk() -> None:
    # A fresh interpreter: this test process may have boto3 loaded by other tests.
    code = (
        "import sys, engine.service, engine.runner, engine.memory, engine.mermaid\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in "
        "('boto3', 'botocore', 'aws_lambda_powertools')]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
