"""moto is pinned to the version the moto layer's patches were checked against, and each patched
function is still there with the parameters the patches pass by position
(infra/moto/patches.py): a moto upgrade fails here, naming what moved, before anything runs."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

from infra.moto.patches import MOTO_VERSION, PATCHES, Patch

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_moto_is_pinned_to_the_version_the_patches_were_checked_against() -> None:
    # Given the project's declared dependencies
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    pins = [r for deps in extras.values() for r in deps if re.match(r"moto\b", r)]
    # Then moto is pinned exactly, to the patches' version, and that version is installed
    assert pins and all(r.endswith(f"=={MOTO_VERSION}") for r in pins), pins
    assert version("moto") == MOTO_VERSION


@pytest.mark.parametrize("patch", PATCHES, ids=lambda p: f"{p.target}<-{p.by}")
def test_each_patched_moto_function_is_there_as_the_patch_calls_it(patch: Patch) -> None:
    # Given a moto function the moto layer replaces
    found = patch.resolve()
    # Then it is callable, and its leading parameters are the ones the patch passes by position
    assert callable(found), patch.target
    if patch.params is not None:
        assert patch.current_params()[: len(patch.params)] == patch.params, patch.target
    # And the patch says why it exists
    assert patch.why and patch.by
