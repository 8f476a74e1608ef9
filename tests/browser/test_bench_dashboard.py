"""The dashboard benchmark at a small size, so it cannot rot; and its section of RESULTS.md leaves the others alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import dashboard, run_all

pytestmark = pytest.mark.browser


def test_dashboard_benchmark_measures_every_figure_at_a_small_size(browser: Any) -> None:
    result = dashboard.run(sizes=(20,), repeats=1, browser=browser)
    row = result["n_20"]
    assert row["partitions"] >= 16 and row["markers"] == 6 * row["partitions"]
    assert row["answer_ms"] > 0 and row["page_load_s"] > 0 and row["refresh_s"] > 0
    assert row["peak_after_3_more_reads_mb"] >= row["peak_rss_mb"] > 0 and row["layout_kb"] > 0
    assert result["summary"] and "goal_met" in result
    assert ("dashboard", dashboard.TITLE) in run_all.BENCHMARKS


def test_its_section_is_replaced_in_place_and_the_others_are_left_alone(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## 12. Status\n\nfigures\n")
    dashboard.write_section(f"## {dashboard.TITLE}\n\nfirst\n", results)
    results.write_text(results.read_text() + "\n## 14. Later\n\nmore\n")
    dashboard.write_section(f"## {dashboard.TITLE}\n\nsecond\n", results)
    assert results.read_text() == (
        f"# Benchmark results\n\n## 12. Status\n\nfigures\n\n## {dashboard.TITLE}\n\nsecond\n\n## 14. Later\n\nmore\n"
    )
