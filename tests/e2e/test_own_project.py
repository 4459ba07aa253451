"""A project of one's own, as a new user makes it, from hopgraph installed with pip (not this
checkout): `hopgraph init`, the project's test, its graphs run in process and on `hopgraph
dev`, and `sam build`, whose artifacts hold the engine, the project's module and its
requirement.

The virtualenv is made offline and fast: hopgraph itself is installed from a copy of this
checkout (`pip install --no-deps --no-build-isolation`), and its dependencies are those of the
test virtualenv, reached through a .pth file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.template.reader import load_template
from tests.e2e.stack import REPO, StackProcess, stack_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SAM = REPO / ".tools" / "sam" / "bin" / "sam"
REQUIREMENT = "humanize"  # small, pure Python, and in no layer of hopgraph's own


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv with hopgraph pip-installed from a copy of this checkout."""
    root = tmp_path_factory.mktemp("own-project")
    source = root / "hopgraph-src"
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO, check=True, capture_output=True, text=True,
    ).stdout.split("\0")  # fmt: skip
    for name in filter(None, files):
        origin, target = REPO / name, source / name
        if origin.exists() or origin.is_symlink():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target, follow_symlinks=False)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    (site / "test-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps"]
    subprocess.run([*pip, "--no-build-isolation", "--no-index", str(source)], check=True)
    return venv


@pytest.fixture(scope="module")
def project(venv: Path) -> Path:
    folder = venv.parent / "work"
    folder.mkdir()
    run(venv, folder, "hopgraph", "init", "my-agent")
    return folder / "my-agent"


def environment(venv: Path) -> dict[str, str]:
    env = stack_env()
    env.pop("PYTHONPATH", None)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["HOPGRAPH_CONFIG_DIR"] = str(venv.parent / "config")  # tokens of `hopgraph login`
    return env


def run(
    venv: Path, cwd: Path, *command: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    program = str(venv / "bin" / command[0]) if command[0] in ("hopgraph", "python") else command[0]
    done = subprocess.run(
        [program, *command[1:]], cwd=cwd, env=environment(venv), capture_output=True, text=True,
        timeout=900,
    )  # fmt: skip
    if check:
        assert done.returncode == 0, f"{command}: {done.stdout}\n{done.stderr}"
    return done


def test_hopgraph_is_the_installed_copy(venv: Path, project: Path) -> None:
    where = run(venv, project, "python", "-c", "import engine, infra; print(engine.__file__)")
    assert where.stdout.startswith(str(venv)), where.stdout


def test_the_projects_own_test_passes(venv: Path, project: Path) -> None:
    done = run(venv, project, "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests")
    assert "2 passed" in done.stdout


def test_its_graphs_run_in_process(venv: Path, project: Path) -> None:
    text = "text=" + "word " * 30
    python_graph = run(venv, project, "hopgraph", "--json", "run", "my_agent.graphs:review",
                       "--local", "--set", text)  # fmt: skip
    assert json.loads(python_graph.stdout.splitlines()[-1])["state"]["notes"] == [
        "long: split it up"
    ]
    json_graph = run(venv, project, "hopgraph", "--json", "run", "graphs/count.json", "--local",
                     "--set", "text=a b")  # fmt: skip
    assert json.loads(json_graph.stdout.splitlines()[-1])["state"]["words"] == 2


@pytest.fixture
def stack(venv: Path, project: Path) -> Iterator[StackProcess]:
    python = str(venv / "bin" / "python")
    # strict: a request without a token is refused, as on AWS
    stack = StackProcess.spawn("sqs", None, None, "--auth", "strict", python=python, cwd=project)
    try:
        stack.wait_ready(90)
        yield stack
    finally:
        stack.kill_all()


def test_its_graphs_run_on_the_local_stack(venv: Path, project: Path, stack: StackProcess) -> None:
    api = ["--api", stack.api]
    # Given the stack started in the project's folder, and a user signed in to it
    secret = ["--secret-file", str(stack.data / "login-secret")]  # strict: the stack's secret
    run(venv, project, "hopgraph", "login", "--user", "alice", *secret, *api)
    # Then the project's tools are there, beside the built-in ones
    tools = run(venv, project, "hopgraph", "--json", "tools", *api)
    names = {tool["name"] for tool in json.loads(tools.stdout)}
    assert {"count_words", "emit", "extract_functions"} <= names
    # When every graph of the project is pushed, and the Python one runs
    pushed = json.loads(run(venv, project, "hopgraph", "--json", "graphs", "push", *api).stdout)
    assert [p["graph"] for p in pushed] == ["my_agent.graphs:review", "graphs/count.json"]
    # listed for alice, who pushed them
    listed = json.loads(run(venv, project, "hopgraph", "--json", "graphs", "list", *api).stdout)
    assert {p["graph_id"] for p in pushed} == {g["graph_id"] for g in listed}
    created = run(venv, project, "hopgraph", "graphs", "create", "my_agent.graphs:review", *api)
    assert "reused" in created.stdout  # same content as pushed
    follow = run(venv, project, "hopgraph", "run", "my_agent.graphs:review", "--set",
                 "text=" + "word " * 30, "-f", *api, "--ws", stack.ws)  # fmt: skip
    # Then it completes with the project's tool and the built-in one
    assert "run completed" in follow.stdout
    assert "long: split it up" in follow.stdout


@pytest.mark.skipif(not SAM.exists(), reason="the SAM CLI is installed by `make tools`")
def test_sam_build_packages_the_project_beside_the_engine(venv: Path, project: Path) -> None:
    # Given a requirement of the project's own
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    pyproject.write_text(text.replace('dependencies = ["hopgraph"]',
                                      f'dependencies = ["hopgraph", "{REQUIREMENT}"]'))  # fmt: skip
    sam_env = {**environment(venv), "AWS_DEFAULT_REGION": "us-east-1", "SAM_CLI_TELEMETRY": "0"}
    lint = [str(SAM), "validate", "--lint", "--template", "template.yaml"]
    linted = subprocess.run(lint, cwd=project, capture_output=True, text=True, env=sam_env)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    # When it is built as `sam build` builds it, without Docker
    build = [str(SAM), "build", "--template", "template.yaml"]
    done = subprocess.run(
        build, cwd=project, capture_output=True, text=True, timeout=1200, env=sam_env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    built = project / ".aws-sam" / "build"
    # Then the project's layer holds its package and its requirement
    layer = built / "ProjectLayer" / "python"
    assert (layer / "my_agent" / "tools.py").is_file()
    assert (layer / REQUIREMENT / "__init__.py").is_file()
    # the engine and the handlers come from the installed hopgraph, with their dependencies
    assert (built / "EngineLayer" / "python" / "engine" / "graph.py").is_file()
    assert (built / "WorkerFunction" / "functions" / "worker" / "handler.py").is_file()
    assert (built / "DepsLayer" / "python" / "pydantic").is_dir()
    assert not (built / "DepsLayer" / "python" / "botocore").exists()
    # and every function has the project's layer and loads its toolkit
    template = load_template(built / "template.yaml")
    assert {"Ref": "ProjectLayer"} in template["Globals"]["Function"]["Layers"]
    functions = [k for k, v in template["Resources"].items() if v["Type"].endswith("::Function")]
    assert set(functions) == {
        "ApiFunction", "WorkerFunction", "SweeperFunction", "DeadLetterFunction",
        "StarterFunction", "WebSocketFunction", "WebSocketAuthorizerFunction",
    }  # fmt: skip
    for name in functions:
        assert "Layers" not in template["Resources"][name]["Properties"], name  # Globals' apply
    assert "my_agent.tools" in template["Parameters"]["Toolkits"]["Default"]
