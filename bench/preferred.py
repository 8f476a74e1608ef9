"""Preferred pull: a worker on the last of 3 subscriptions (2 empty) next to a one-subscription worker.

On the emulator, ``tasks`` short tasks (``common sleep 0.05``) wait on one subscription.
``single``: one worker serves only that subscription. ``last_of_three``: one worker
serves ``--subscription empty-a,empty-b,TASKS``, so before each task it must find the
two preferred subscriptions empty. Figure: the median per-task gap, from a task's
``done`` to the next task's ``started`` in the same worker (the worker's own log
timestamps), and the span from the first ``started`` to the last ``done``. Goal: the
three-subscription gap within 2x of the one-subscription gap, measured in the same run.
"""

from __future__ import annotations

import uuid
from typing import Any

from bench.harness import WorkerProc, backend, emulator, enqueue, fresh_topic, median, ms, print_result, scratch_dir

TASKS = 20
GOAL = 2.0


def _one(tasks: int, preferred_empty: int) -> tuple[list[float], float]:
    """Run ``tasks`` sleeps through one worker whose subscription comes after ``preferred_empty`` empty ones."""
    with scratch_dir("preferred") as scratch:
        b = backend("emulator", scratch)
        with b.open() as q:
            topic = fresh_topic(q, "pref")
            empty = [fresh_topic(q, f"pref-empty{i}") for i in range(preferred_empty)]
            enqueue(q, topic, "sleep", [["0.05"] for _ in range(tasks)])
        subscriptions = ",".join([*empty, topic])
        w = WorkerProc(b.url, subscriptions, scratch, idle_timeout=3, worker_id=f"pref-{uuid.uuid4().hex[:6]}")
        try:
            w.wait(timeout=tasks * 10 + 60)
        finally:
            w.kill()
        if w.count("done") != tasks:
            raise RuntimeError(f"the worker finished {w.count('done')} of {tasks} tasks")
        span = max(w.times("done")) - min(w.times("started"))
        return w.gaps(), span


def run(repeats: int = 3, tasks: int = TASKS) -> dict[str, Any]:
    """Median gap and span over ``repeats`` runs of each worker, alternating."""
    gaps: dict[str, list[float]] = {"single": [], "last_of_three": []}
    spans: dict[str, list[float]] = {"single": [], "last_of_three": []}
    with emulator():
        for _ in range(repeats):
            for name, empty in (("single", 0), ("last_of_three", 2)):
                g, span = _one(tasks, empty)
                gaps[name] += g
                spans[name].append(span)
    out: dict[str, Any] = {"tasks": tasks, "repeats": repeats, "backend": "emulator"}
    for name in gaps:
        out[name] = {
            "gap_median_ms": ms(median(gaps[name])),
            "gap_max_ms": ms(max(gaps[name])),
            "first_started_to_last_done_s": round(median(spans[name]), 2),
        }
    ratio = median(gaps["last_of_three"]) / median(gaps["single"])
    out["gap_ratio"] = round(ratio, 2)
    out["summary"] = (
        f"per-task gap {out['last_of_three']['gap_median_ms']:g} ms on the last of 3 subscriptions "
        f"vs {out['single']['gap_median_ms']:g} ms on one: {ratio:.2f}x"
    )
    out["goal"] = f"gap within {GOAL:g}x of the one-subscription worker's"
    out["goal_met"] = ratio <= GOAL
    return out


if __name__ == "__main__":
    print_result("preferred", run())
