"""The scale benchmark at small sizes, so it cannot rot: every figure is measured and plausible."""

from __future__ import annotations

from pathlib import Path

from bench import run_all, scale


def test_scale_benchmark_measures_every_cost_at_small_sizes(tmp_path: Path) -> None:
    result = scale.run(sizes=(10, 200), repeats=1, old_fanin_max=1000)
    small, large = result["n_10"], result["n_200"]
    assert small["partitions"] < large["partitions"]
    for row in (small, large):
        assert row["write_jobs_seconds"] > 0 and row["write_jobs_peak_rss_mb"] >= row["write_jobs_floor_rss_mb"] > 0
        assert 0 < row["job_load_ms"] < 1000
        assert row["fanin_listings"] >= row["partitions"] and row["old_fanin_s"] is not None
        assert row["markers"] == 6 * row["partitions"] and row["status_s"] > 0
    png = tmp_path / "scale.png"
    scale.plot({k: v for k, v in result.items() if k.startswith("n_")}, png)
    assert png.stat().st_size > 10_000
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## 6. Drain\n\nfigures\n")
    scale.write_section(scale.section(result, 1.0), results)
    scale.write_section(scale.section(result, 2.0), results)  # replaced, not appended twice
    text = results.read_text()
    assert text.startswith("# Benchmark results\n\n## 6. Drain\n\nfigures\n\n## 7. Scale")
    assert text.count("## 7. Scale") == 1 and "| 10 |" not in text.split("## 7.")[0]
    assert ("scale", scale.TITLE) in run_all.BENCHMARKS
