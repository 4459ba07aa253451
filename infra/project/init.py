"""``hopgraph init DIR``: a project of one's own, from the files shipped in this package.

The project's ``template.yaml`` is hopgraph's own (``data/template.yaml``), with every code
artifact built by the project's ``Makefile`` (:mod:`infra.project.build`) and one more layer,
``ProjectLayer``, holding the project's packages and their requirements beside the engine.
"""

from __future__ import annotations

import argparse
import keyword
import re
from importlib import resources
from pathlib import Path

from infra.cli.inputs import UsageError
from infra.project.settings import BUILTIN_TOOLKITS

_FILES = {  # scaffold file -> where it goes ({package}: the Python package)
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "gitignore.tmpl": ".gitignore",
    "Makefile.tmpl": "Makefile",
    "samconfig.toml.tmpl": "samconfig.toml",
    "__init__.py.tmpl": "{package}/__init__.py",
    "tools.py.tmpl": "{package}/tools.py",
    "graphs.py.tmpl": "{package}/graphs.py",
    "count.json.tmpl": "graphs/count.json",
    "test_tools.py.tmpl": "tests/test_tools.py",
}

PROJECT_LAYER = """\
  ProjectLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      Description: This project's packages and their requirements (pyproject.toml)
      ContentUri: {package}
      CompatibleRuntimes: [python3.11]
      CompatibleArchitectures: [x86_64]
      RetentionPolicy: Delete
    Metadata:
      BuildMethod: makefile
      BuildArchitecture: x86_64
      ContextPath: .
      WorkingDirectory: .

"""

HEADER = """\
# Written by `hopgraph init` from hopgraph's own template.yaml: the same table, queues, APIs
# and functions, with this project's code as one more layer (ProjectLayer) and every artifact
# built by ./Makefile from the installed hopgraph (`python -m infra.project.build`).
"""


def package_name(text: str) -> str:
    """``My Agent-2`` -> ``my_agent_2``: a name Python can import."""
    name = re.sub(r"\W+", "_", text.strip().lower()).strip("_") or "project"
    if name[0].isdigit() or keyword.iskeyword(name):
        name = f"project_{name}"
    return name


def cmd_init(args: argparse.Namespace) -> int:
    root = Path(args.dir)
    package = package_name(args.name or root.resolve().name)
    if args.name and package != args.name:
        raise UsageError(f"--name must be a Python package name, such as {package!r}")
    written = init_project(root, package)
    print(f"created project {package} in {root}:")
    for path in written:
        print(f"  {path.relative_to(root)}")
    print(f"\nnext:\n  cd {root}\n  python -m pytest tests\n"
          f"  hopgraph run {package}.graphs:review --local --set text='a few words'")  # fmt: skip
    return 0


def init_project(root: Path, package: str) -> list[Path]:
    """Write the project into ``root`` (new, or empty); return the files written."""
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise UsageError(f"{root} exists and is not empty: init writes into a new folder")
    project = package.replace("_", "-")
    scaffold = resources.files("infra.project") / "scaffold"
    written = []
    for source, target in _FILES.items():
        text = (scaffold / source).read_text(encoding="utf-8")
        text = text.replace("{{package}}", package).replace("{{project}}", project)
        written.append(_write(root / target.format(package=package), text))
    written.append(_write(root / "template.yaml", project_template(package)))
    return written


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def project_template(package: str) -> str:
    """hopgraph's template.yaml for a project whose Python package is ``package``."""
    text = (resources.files("infra.project") / "data" / "template.yaml").read_text("utf-8")
    toolkits = ",".join([*BUILTIN_TOOLKITS, f"{package}.tools"])
    text, found = re.subn(r"(?m)^(  Toolkits:\n    Type: String\n    Default: ).*$",
                          lambda m: m.group(1) + toolkits, text)  # fmt: skip
    if found != 1:
        raise RuntimeError("hopgraph's template.yaml changed: no Toolkits parameter")
    edits = [  # (what, with what, how many times): a changed template fails loudly here
        ("      - !Ref EngineLayer\n", "      - !Ref EngineLayer\n      - !Ref ProjectLayer\n", 1),
        ("      ContentUri: layers/deps\n", f"      ContentUri: {package}\n", 1),
        ("      ContentUri: engine\n", f"      ContentUri: {package}\n", 1),
        ("  EngineLayer:\n", PROJECT_LAYER.format(package=package) + "  EngineLayer:\n", 1),
    ]
    for old, new, count in edits:
        if text.count(old) != count:
            raise RuntimeError(f"hopgraph's template.yaml changed: {old.strip()!r} is not there")
        text = text.replace(old, new)
    text = re.sub(r"(?m)^      CodeUri: functions$", f"      CodeUri: {package}", text)
    return HEADER + text
