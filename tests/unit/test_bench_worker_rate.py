"""The worker-rate benchmark at a tiny size, so it cannot rot: both codes run and are counted."""

from __future__ import annotations

import pytest

from bench import run_all, worker_rate

#: Runs real workers or whole jobs: `make test` only, not `make check`.
pytestmark = pytest.mark.slow


def test_worker_rate_benchmark_counts_tasks_of_the_old_and_the_new_worker() -> None:
    result = worker_rate.run(sizes=(20,), repeats=1, window=10)  # the first task alone may take seconds here
    row = result["n_20"]
    assert row["partitions"] > 0
    for name in ("old", "new"):
        (one,) = row["runs"][name]
        assert one["done"] > 0 and one["tasks"] > 0 and " / " in one["load"]
    assert row["ratio"] == round(row["new_tasks"] / row["old_tasks"], 2) and len(row["pair_ratios"]) == 1
    assert row["new_task_process_ms"] > 0 and row["new_done_to_done_ms"] >= row["new_task_process_ms"] * 0.5
    table = worker_rate.markdown(result)
    assert any(line.startswith(f"| {row['partitions']} |") for line in table)
    assert result["baseline"] and result["goal_met"] == (row["ratio"] >= worker_rate.GOAL)
    assert ("worker_rate", worker_rate.TITLE) in run_all.BENCHMARKS
