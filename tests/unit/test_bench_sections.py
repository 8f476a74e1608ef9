"""A benchmark run alone rewrites only its own section of RESULTS.md."""

from __future__ import annotations

from pathlib import Path

from bench import sections


def test_a_section_is_appended_at_the_end_then_replaced_in_place(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## 1. One\n\nfirst\n\n## 2. Two\n\nsecond\n")
    sections.write("3. Three", "## 3. Three\n\nthird, run 1\n", results)
    assert results.read_text().endswith("## 2. Two\n\nsecond\n\n## 3. Three\n\nthird, run 1\n")
    sections.write("1. One", "## 1. One\n\nfirst, again\n", results)
    sections.write("3. Three", "## 3. Three\n\nthird, run 2\n", results)
    assert results.read_text() == (
        "# Benchmark results\n\n## 1. One\n\nfirst, again\n\n## 2. Two\n\nsecond\n\n## 3. Three\n\nthird, run 2\n"
    )
