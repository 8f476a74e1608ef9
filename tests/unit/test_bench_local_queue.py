"""Embedded queue at job scale: a pull's work does not grow with the backlog.

Work is counted in SQLite virtual-machine steps (deterministic, unlike time); the
timed figures are in bench/local_queue.py, which runs here at a small size so it
cannot rot between `make bench` runs.
"""

from __future__ import annotations

from pathlib import Path

from bench import local_queue
from rslp.queue import Outgoing
from rslp.queue.local import LocalQueue


def _pull_ack_steps(path: Path, waiting: int) -> int:
    q = LocalQueue(path)
    q.setup("steps", "steps")
    q.publish("steps", [Outgoing(b"{}") for _ in range(waiting)])
    for m in q.pull("steps", 60, max_messages=10):
        q.nack(m)  # some delivered before, as in a job with retries
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    q._db().set_progress_handler(count, 10)
    (m,) = q.pull("steps", 60)
    q.ack(m)
    q.close()
    return steps


def test_pull_and_ack_work_does_not_grow_with_the_backlog(tmp_path: Path) -> None:
    small = _pull_ack_steps(tmp_path / "small.db", 1_000)
    large = _pull_ack_steps(tmp_path / "large.db", 20_000)
    assert large < 2 * small, f"pull+ack took {small} SQLite steps x10 at 1k waiting, {large} at 20k"


def test_local_queue_benchmark_measures_both_backlogs() -> None:
    result = local_queue.measure(small=50, large=500, samples=20)
    assert result["pull_ack_median_ms_at_50"] > 0 and result["pull_ack_median_ms_at_500"] > 0
    assert result["ratio"] > 0 and isinstance(result["goal_met"], bool)
    assert "at 500" in result["summary"]
