"""Reading template.yaml is cheap after the first time (the tests and the local stack read it
often): an unchanged file is not parsed again, every caller gets a copy of its own, and the
fast loader reads exactly what :class:`CfnLoader` reads."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from infra.template import reader
from infra.template.reader import TEMPLATE_PATH, CfnLoader, load_template


def test_the_fast_loader_reads_what_the_reference_loader_reads() -> None:
    # Given template.yaml read by the plain-Python CfnLoader
    expected = yaml.load(TEMPLATE_PATH.read_text(), Loader=CfnLoader)
    # Then load_template (libyaml when PyYAML has it) reads the same document
    assert load_template() == expected


def test_each_caller_gets_a_copy_of_its_own() -> None:
    # Given a caller that changes the template it was given
    first = load_template()
    first["Resources"].clear()
    # Then the next caller gets the file's content, whole
    assert load_template()["Resources"]


def test_an_unchanged_file_is_not_parsed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the template read once
    load_template()
    parses: list[object] = []
    real_load = yaml.load
    monkeypatch.setattr(yaml, "load", lambda *a, **k: parses.append(a) or real_load(*a, **k))
    # When it is read again
    load_template()
    # Then nothing was parsed
    assert parses == []


def test_a_changed_file_is_parsed_again(tmp_path: Path) -> None:
    # Given a copy of the template, read once
    copy = tmp_path / "template.yaml"
    shutil.copy(TEMPLATE_PATH, copy)
    assert "Description" in load_template(copy)
    # When the file changes (a later modification time, another size)
    copy.write_text(copy.read_text().replace("\nDescription:", "\nX-Description:", 1))
    stat = copy.stat()
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    # Then the next read sees the change
    changed = load_template(copy)
    assert "Description" not in changed and "X-Description" in changed


def test_a_file_that_is_no_template_is_refused_every_time(tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text("just: a mapping\n")
    for _ in range(2):
        with pytest.raises(ValueError, match="not a CloudFormation template"):
            load_template(other)
    assert not any(key[0] == str(other.resolve()) for key in reader._parsed)
