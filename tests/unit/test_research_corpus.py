"""The research agent's corpus ships with the engine layer and is found beside its module,
whatever the working directory (on Lambda it is /var/task, which holds no examples/), and a
graph may name no other file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.toolkits.research import CORPORA, DEFAULT_CORPUS, corpus_path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "research_agent.json"


def test_the_packaged_engine_layer_finds_the_corpus_from_any_working_directory(
    tmp_path: Path,
) -> None:
    # Given the engine layer as `sam build` builds it (its Makefile target), bytecode aside
    built = tmp_path / "artifacts"
    subprocess.run(
        ["make", "-s", "build-EngineLayer", f"ARTIFACTS_DIR={built}", "LAMBDA_PYTHON=false"],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    layer = built / "python"
    assert (layer / "engine" / "toolkits" / DEFAULT_CORPUS).is_file()
    # When a worker elsewhere (a working directory with no examples/ in it) imports the
    # toolkit from the layer and searches with the example's own settings
    settings = json.loads(EXAMPLE.read_text())["nodes"]["researcher"]["agent"]["tool_settings"]
    script = (
        "import json, sys\n"
        "from engine.tools import ToolContext\n"
        "import engine.toolkits.research as research\n"
        "ctx = ToolContext('r', 'researcher_tools', 1, settings=json.loads(sys.argv[1]))\n"
        "found = research.search_docs({'query': 'Lambda timeout'}, ctx)\n"
        "print(json.dumps({'module': research.__file__, 'titles': "
        "[d['title'] for d in found['results']]}))\n"
    )
    cwd = tmp_path / "var" / "task"
    cwd.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(layer)}
    out = subprocess.run(
        [sys.executable, "-c", script, json.dumps(settings["search_docs"])],
        cwd=cwd, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    # Then the layer's module answered from the layer's corpus
    answer = json.loads(out.stdout)
    assert Path(answer["module"]).is_relative_to(layer)
    assert answer["titles"], "the corpus has documents on Lambda timeouts"


@pytest.mark.parametrize(
    "name", ["../research.py", "../../pyproject.json", "/etc/passwd", "code_review/x.json",
             "research.py"],
)  # fmt: skip
def test_a_graph_names_a_corpus_beside_the_module_and_no_other_file(name: str) -> None:
    with pytest.raises(ValueError, match="name a JSON file beside"):
        corpus_path(name)
    assert corpus_path(DEFAULT_CORPUS) == CORPORA / DEFAULT_CORPUS
