"""The preferred-pull and pipeline-on-Pub/Sub benchmarks at a small size, so they cannot rot."""

from __future__ import annotations

from bench import pipeline_queues, preferred


def test_preferred_bench_measures_both_workers(emulator_host: str) -> None:
    result = preferred.run(repeats=1, tasks=4)
    assert result["single"]["gap_median_ms"] > 0 and result["last_of_three"]["gap_median_ms"] > 0
    assert result["gap_ratio"] > 0 and isinstance(result["goal_met"], bool)


def test_pipeline_queues_bench_runs_the_job_on_both_queues(emulator_host: str) -> None:
    result = pipeline_queues.run(repeats=1, cell_size=256, workers=1, idle_timeout=6)
    for name in ("embedded", "emulator"):
        assert result[name]["partitions"] == 4
        assert result[name]["runs_by_job_step"][0]["combine"]["done"] >= 1
        assert result[name]["fetched_vs_unique_scene_bytes"] == 1.0
    assert result["ratio"] > 0
