"""Every benchmark's code paths at small sizes, so ``make bench`` cannot rot between runs.

The figures are not checked (bench/ measures; tests prove behaviour): each module must
run end to end and return its summary. The demo pipeline is run from a copy with no
generated data, as on a fresh checkout: the benchmarks must set themselves up.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from bench import cold_start, drain, enqueue, fleet, overhead, pipeline
from bench.harness import emulator
from rslp.pipeline.demo import DEMO_DIR

pytestmark = pytest.mark.slow

DEMO_FILES = ("pipeline.yaml", "dataset.json", "model.yaml", "checkpoint.ckpt", "request.geojson")


@pytest.fixture
def fresh_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The demo pipeline as a fresh checkout has it: config, model and request, no data/."""
    for name in DEMO_FILES:
        shutil.copy(DEMO_DIR / name, tmp_path / name)
    monkeypatch.setattr(pipeline, "CONFIG", tmp_path / "pipeline.yaml")
    monkeypatch.setattr(pipeline, "REQUEST", tmp_path / "request.geojson")
    return tmp_path


def _ran(result: dict[str, Any]) -> None:
    assert "failed" not in result
    assert result["summary"] and "goal_met" in result


def test_cold_start_benchmark_sets_up_the_demo_data_itself(fresh_demo: Path, emulator_host: str) -> None:
    assert not (fresh_demo / "data").exists()
    result = cold_start.run(repeats=1, predict_repeats=1)
    _ran(result)
    assert (fresh_demo / "data" / "images").is_dir()
    assert result["predict"]["model_loads"] == 1


def test_pipeline_benchmark_runs_on_a_fresh_checkout(
    fresh_demo: Path, one_partition_request: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "REQUEST", one_partition_request)  # its code paths, not its figures
    result = pipeline.run(repeats=1)
    _ran(result)
    assert result["job"].startswith("tasks/demo (8 tasks: 1 partitions")


def test_queue_benchmarks_run_at_small_sizes(emulator_host: str) -> None:
    with emulator():
        _ran(enqueue.run(repeats=1, messages=200, sample=20))
        _ran(overhead.run(repeats=1, tasks=5))
        _ran(fleet.run(repeats=1, tasks=8, seconds=0.1, workers=2))
        _ran(drain.run(repeats=1, tasks=4, workers=2, idle_timeout=1.0))
