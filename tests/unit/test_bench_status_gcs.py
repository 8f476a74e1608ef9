"""The status-on-GCS benchmark at a small size, so it cannot rot."""

from __future__ import annotations

from bench.status_gcs import run


def test_status_gcs_benchmark_times_status_on_an_emulated_bucket() -> None:
    result = run(partitions=5, repeats=1)
    assert result["markers"] == 30
    assert result["rslp_status_cli_median_s"] > result["collect_median_s"] > 0
    assert result["goal_met"] is True and "30 markers" in result["summary"]
