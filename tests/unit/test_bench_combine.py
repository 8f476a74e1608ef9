"""The combine benchmark at a small size, so it cannot rot."""

from __future__ import annotations

from pathlib import Path

from bench.combine import RSS_LIMIT_MB, run


def test_combine_benchmark_measures_rss_and_time_and_plots_them(tmp_path: Path) -> None:
    result = run(sizes=(4, 9), two_zones=4, plot=tmp_path / "combine.png")
    for key in ("n4", "n9", "n4_two_zones"):
        assert 0 < result[key]["peak_rss_mb"] < RSS_LIMIT_MB and result[key]["seconds"] > 0
    assert result["n9"]["mosaic_mpx"] > result["n4"]["mosaic_mpx"]
    assert result["goal_met"] is True and "N=9" in result["summary"]
    assert (tmp_path / "combine.png").read_bytes().startswith(b"\x89PNG")
