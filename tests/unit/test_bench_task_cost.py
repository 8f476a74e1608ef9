"""The task-cost benchmark at a tiny size, so it cannot rot: every part is timed for both codes."""

from __future__ import annotations

import pytest

from bench import run_all, task_cost

#: Runs real workers or whole jobs: `make test` only, not `make check`.
pytestmark = pytest.mark.slow


def test_task_cost_times_every_part_of_a_task_for_the_old_and_the_new_code() -> None:
    result = task_cost.run(size=30, tasks=3, repeats=1)
    for name in ("old", "new"):
        figures = result[name]
        assert figures["task_ms"] > 0 and figures["first_task_s"] > figures["task_ms"] / 1000
        parts = figures["parts_ms"]
        assert {label for label, _, _ in task_cost.PARTS} <= set(parts)
        assert parts["task: step (all of it)"] >= parts["step: Window.save (the work)"] > 0
    assert "create_windows" in result["pyinstrument"]
    assert "| task: parse_args |" in "\n".join(task_cost.markdown(result))
    assert ("task_cost", task_cost.TITLE) in run_all.BENCHMARKS
