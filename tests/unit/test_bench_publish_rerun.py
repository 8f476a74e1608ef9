"""The resumed write-jobs benchmark at its small size, so it cannot rot: its counts come from the queue."""

from __future__ import annotations

import pytest
from upath import UPath

from bench import publish_rerun, run_all
from rslp.pipeline.publish_log import PublishLog

#: Runs write-jobs nine times in subprocesses: `make test` only, not `make check`.
pytestmark = pytest.mark.slow


def test_publish_rerun_benchmark_counts_what_the_queue_holds_after_a_clean_and_a_killed_run() -> None:
    # The smallest job whose publishing lasts long enough to be killed partway (a fraction of a second).
    result = publish_rerun.run(sizes=(1_600,))
    row = result["n_1600"]
    # One first-step task per partition: the clean run queues exactly the job's partitions.
    assert row["partitions"] > 1_000 and row["clean"] == row["partitions"]
    for run in [*row["reruns"], row["republish"]]:
        assert 0 < run["at_kill"] < row["clean"] <= run["total"]  # killed partway, then finished
        assert run["extra"] == round((run["total"] - row["clean"]) / row["clean"], 4)
    # Without the publish log the rerun sends again everything the killed run had queued.
    assert row["republish"]["total"] == row["clean"] + row["republish"]["at_kill"]
    # With it, at most the span in flight at the kill goes out twice.
    span = PublishLog(UPath("/unused"), "local://unused", row["partitions"]).span_size
    assert all(run["total"] - row["clean"] <= span for run in row["reruns"])
    assert row["worst_extra"] == max(run["extra"] for run in row["reruns"])
    assert result["goal_met"] == (row["worst_extra"] <= publish_rerun.GOAL)
    assert any(line.startswith(f"| {row['partitions']} |") for line in publish_rerun.markdown(result))
    assert ("publish_rerun", publish_rerun.TITLE) in run_all.BENCHMARKS
