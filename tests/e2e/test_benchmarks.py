"""The local stack's benchmarks measure what they say, on a few runs: every step of every run
is committed once and timed (benchmarks/local_floor.py, benchmarks/local_load.py), a
wide map's every item is done (benchmarks/wide_map.py), and a wide map's progress is read
interval by interval (benchmarks/map_growth.py)."""

from __future__ import annotations

import argparse

import pytest

from benchmarks import local_floor, local_load, map_growth, wide_map

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

RUNS, STEPS = 12, 3


def test_the_bare_calls_commit_each_step_once_and_time_every_hop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given credentials for moto, as the stack sets them
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    # When the floor's chains run
    floor = local_floor.measure_floor(RUNS, STEPS, pollers=4)
    # Then every step was committed, each hop after the first of a run timed, and CPU counted
    assert floor.steps == RUNS * STEPS
    assert len(floor.hop_ms) == RUNS * (STEPS - 1)
    assert all(ms > 0 for ms in floor.hop_ms)
    assert 0 < floor.moto_cpu_s < floor.cpu_s


def test_the_load_benchmark_finds_every_run_whole() -> None:
    # Given the stack, started as the benchmark starts it
    args = argparse.Namespace(runs=RUNS, steps=STEPS, concurrency=4, deadline=120.0, dispatch="sqs")
    # When a few runs go through it
    figures = local_load.measure(args)
    # Then each completed with a whole log, and each hop and start was timed
    assert (figures.completed, figures.intact, figures.lost) == (RUNS, RUNS, 0)
    assert figures.steps == RUNS * STEPS
    assert len(figures.hop_ms) == RUNS * (STEPS - 1)
    assert len(figures.start_ms) == RUNS


def test_the_wide_map_benchmark_times_maps_whose_every_item_is_done(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # When it runs maps of 3 and 5 items (it checks each run's state holds every item)
    code = wide_map.main(["--items", "3", "5"])
    # Then it prints one line per size and the summary line
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert [line.split()[0] for line in lines[1:3]] == ["3", "5"]
    assert lines[-1].startswith("wide_map_ms_per_item 3:")


def test_the_growth_benchmark_reads_a_maps_progress_to_its_end(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # When it follows a map of 800 items (counted: above the fan-in's threshold)
    code = map_growth.main(["--items", "800", "--every", "0.3"])
    # Then its lines count the items committed, rising to all 800, then the summary line
    lines = capsys.readouterr().out.splitlines()
    counts = [int(line.split("items")[1].split()[0].replace(",", "")) for line in lines[:-1]]
    assert code == 0
    assert counts == sorted(counts)
    assert counts[-1] == 800
    assert len(set(counts)) > 2  # some lines between the first item and the last
    assert "completed" in lines[-2]
    assert lines[-1].startswith("map_growth_moto_ms_per_item ")
