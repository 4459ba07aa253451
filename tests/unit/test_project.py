"""A project of one's own: `hopgraph init`, its settings, and the CLI loading its tools and
graphs from its folder (no PYTHONPATH), the built-in toolkits always included."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.cli.inputs import UsageError
from infra.cli.main import main
from infra.project.init import init_project, package_name, project_template
from infra.project.settings import (
    BUILTIN_TOOLKITS,
    ProjectError,
    find_project,
    toolkit_modules,
)
from infra.template.reader import load_template


@pytest.fixture
def isolated_imports() -> Iterator[None]:
    """The CLI puts the project on sys.path and imports its modules: undo both."""
    path, modules = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        del sys.modules[name]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_imports: None) -> Path:
    root = tmp_path / "my-agent"
    init_project(root, "my_agent")
    monkeypatch.chdir(root)
    monkeypatch.delenv("HOPGRAPH_TOOLKITS", raising=False)
    return root


def run_json(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    code = main(["--json", *args])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    result: dict[str, Any] = json.loads(lines[-1])
    result["exit"] = code
    return result


def test_init_writes_a_project(project: Path) -> None:
    files = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file())
    assert files == [
        ".gitignore", "Makefile", "README.md", "graphs/count.json", "my_agent/__init__.py",
        "my_agent/graphs.py", "my_agent/tools.py", "pyproject.toml", "samconfig.toml",
        "template.yaml", "tests/test_tools.py",
    ]  # fmt: skip
    settings = find_project(project / "my_agent")  # found from a folder inside it too
    assert settings is not None
    assert settings.root == project
    assert settings.toolkits == ("my_agent.tools",)
    assert settings.graphs == ("my_agent.graphs:review", "graphs/count.json")
    assert settings.packages == ("my_agent",)
    assert settings.requirements == ()  # hopgraph itself is not shipped as a requirement


def test_init_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("mine")
    with pytest.raises(UsageError, match="not empty"):
        init_project(tmp_path, "p")


@pytest.mark.parametrize(
    ("text", "package"), [("my-agent", "my_agent"), ("My Agent 2", "my_agent_2"),
                          ("2fast", "project_2fast"), ("class", "project_class")],
)  # fmt: skip
def test_package_names_are_importable(text: str, package: str) -> None:
    assert package_name(text) == package


def test_the_project_template_is_hopgraphs_with_the_project_layer() -> None:
    # Given the template for package my_agent
    template = load_template_text(project_template("my_agent"))
    resources = template["Resources"]
    # Then every function has the project's layer beside the engine's, and loads its toolkit
    layers = template["Globals"]["Function"]["Layers"]
    assert layers == [{"Ref": "DepsLayer"}, {"Ref": "EngineLayer"}, {"Ref": "ProjectLayer"}]
    default = template["Parameters"]["Toolkits"]["Default"]
    assert default.split(",") == [*BUILTIN_TOOLKITS, "my_agent.tools"]
    # and every artifact is built by the project's Makefile, from a folder of the project
    for name, resource in resources.items():
        uri = resource["Properties"].get("CodeUri") or resource["Properties"].get("ContentUri")
        if uri is not None:
            assert uri == "my_agent", name
            assert resource["Metadata"]["BuildMethod"] == "makefile", name
    makefile = (Path(__file__).parents[2] / "infra/project/scaffold/Makefile.tmpl").read_text()
    for name, resource in resources.items():
        if resource["Properties"].get("CodeUri") or resource["Properties"].get("ContentUri"):
            assert f"build-{name}" in makefile, name


def load_template_text(text: str) -> dict[str, Any]:
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        file.write(text)
        file.flush()
        return load_template(Path(file.name))


def test_run_local_loads_the_projects_tools_and_builtins(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the project's graph written in Python, which uses its tool and a built-in one
    # When it runs in process from the project's folder, without PYTHONPATH
    result = run_json(
        ["run", "my_agent.graphs:review", "--local", "--set", f"text={'w ' * 30}"], capsys
    )
    # Then both tools ran
    assert result["exit"] == 0, result
    assert result["state"]["verdict"] == "long"
    assert result["state"]["notes"] == ["long: split it up"]


def test_toolkit_adds_to_the_builtins_and_needs_no_pythonpath(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    isolated_imports: None,
) -> None:  # fmt: skip
    # Given a toolkit module in a folder that is no project, and a graph using it and a built-in
    (tmp_path / "my_tools.py").write_text(
        "from engine.tools import Toolkit\ntoolkit = Toolkit('my_tools')\n\n"
        "@toolkit.tool\ndef shout(state, ctx):\n    return {'out': state['text'].upper()}\n"
    )
    graph = {"entry": "a", "nodes": {"a": {"tool": "shout"}, "b": {"tool": "increment"}},
             "edges": {"a": "b", "b": "END"}}  # fmt: skip
    (tmp_path / "g.json").write_text(json.dumps(graph))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HOPGRAPH_TOOLKITS", raising=False)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    # When it runs with --toolkit my_tools
    result = run_json(["run", "g.json", "--local", "--toolkit", "my_tools", "--set", "text=hi"],
                      capsys)  # fmt: skip
    # Then the module imports from the current folder and the built-in tool is still there
    assert result["exit"] == 0, result
    assert result["state"] == {"text": "hi", "out": "HI", "count": 1}


def test_toolkit_modules_keep_the_builtins_first_and_each_once(project: Path) -> None:
    settings = find_project()
    modules = toolkit_modules(settings, ["extra.tools", "my_agent.tools"], "env.tools,")
    assert modules == [*BUILTIN_TOOLKITS, "env.tools", "my_agent.tools", "extra.tools"]


def test_an_unknown_setting_is_refused_with_a_suggestion(project: Path) -> None:
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("toolkits =", "toolkit ="))
    with pytest.raises(ProjectError, match=r"unknown key 'toolkit' \(did you mean 'toolkits'\?\)"):
        find_project()


def test_a_module_graph_that_is_missing_is_said_plainly(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "my_agent.graphs:nothing", "--local"]) == 2
    assert "module 'my_agent.graphs' has no 'nothing'" in capsys.readouterr().err


def test_dev_loads_the_builtins_the_project_and_each_toolkit_option(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given `hopgraph dev --toolkit extra.tools` in the project, with $HOPGRAPH_TOOLKITS set
    import infra.stack.local_stack

    started: list[Any] = []
    monkeypatch.setattr(
        infra.stack.local_stack, "serve", lambda config: started.append(config) or 0
    )
    monkeypatch.setenv("HOPGRAPH_TOOLKITS", "env.tools")
    # When it starts
    assert main(["dev", "--toolkit", "extra.tools", "--data", str(project / ".hopgraph")]) == 0
    # Then the stack is configured with all of them, the built-ins first
    (config,) = started
    assert config.toolkits.split(",") == [
        *BUILTIN_TOOLKITS,
        "env.tools",
        "my_agent.tools",
        "extra.tools",
    ]
    assert str(project) in sys.path


@pytest.mark.slow  # a pytest of its own in a subprocess: make test, not make check
def test_the_projects_own_tests_pass(project: Path) -> None:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=project, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_push_outside_a_project_says_how_to_start_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["graphs", "push"]) == 2
    assert "hopgraph init DIR" in capsys.readouterr().err
