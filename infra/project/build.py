"""``python -m infra.project.build ARTIFACT DIR``: one Lambda artifact of a project, as its
``Makefile`` asks when ``sam build`` runs (``DIR`` is SAM's ``ARTIFACTS_DIR``).

- ``deps``: hopgraph's third-party packages, from the lock shipped with it (hash-checked
  wheels for the Lambda platform; boto3 and botocore come with the runtime);
- ``engine``: the installed ``engine`` package; ``functions``: the installed handlers;
- ``project``: the project's packages (those of its toolkits and graph modules) and its
  ``[project] dependencies`` (hopgraph itself left out), installed for the Lambda platform.
"""

from __future__ import annotations

import compileall
import importlib.util
import py_compile
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

from infra.project.settings import find_project

LAMBDA_PLATFORM = [
    "--platform", "manylinux2014_x86_64", "--implementation", "cp",
    "--python-version", "3.11", "--only-binary=:all:",
]  # fmt: skip
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer")
"""Installed as dependencies, but the runtime provides them: a second botocore in /opt/python
would shadow the runtime's and mismatch its boto3."""


def pip_install(target: Path, *arguments: str) -> None:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*command, *LAMBDA_PLATFORM, "--target", str(target), *arguments], check=True)


def copy_package(name: str, into: Path, source: Path | None = None) -> None:
    """Copy the package ``name`` (installed, or from ``source``) into ``into``, compiled."""
    if source is None:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise SystemExit(f"package {name!r} is not installed")
        source = Path(spec.origin).parent
    target = into / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # bytecode shipped, so a cold start does not compile every module (unchecked: zip mtimes)
    compileall.compile_dir(
        target, quiet=1, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
    )


def build(artifact: str, out: Path) -> None:
    if artifact == "deps":
        lock = resources.files("infra.project") / "data" / "deps-requirements.txt"
        with resources.as_file(lock) as path:
            pip_install(out / "python", "--require-hashes", "-r", str(path))
        for name in RUNTIME_PROVIDED:
            for found in (out / "python").glob(f"{name}*"):
                if found.name == name or found.name.startswith(f"{name}-"):
                    shutil.rmtree(found)
    elif artifact == "engine":
        copy_package("engine", out / "python")
    elif artifact == "functions":
        copy_package("functions", out)
    elif artifact == "project":
        project = find_project()
        if project is None:
            raise SystemExit("no pyproject.toml with [tool.hopgraph] here or above")
        for package in project.packages:
            copy_package(package, out / "python", project.root / package)
        if project.requirements:
            pip_install(out / "python", *project.requirements)
    else:
        raise SystemExit(f"unknown artifact {artifact!r}: deps, engine, functions or project")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    build(args[0], Path(args[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
