"""Fleet efficiency: 200 tasks of 0.5 s over 4 worker processes, on each backend.

``common sleep 0.5`` needs no CPU, so 4 workers on this 2-core machine are not CPU
bound and the ideal makespan is tasks x duration / workers (25 s). What the fleet
adds on top is per-task overhead, uneven sharing of the tasks, and the tail where
some workers have nothing left.

Makespan runs from the first task's ``started`` to the last task's ``done`` across
all workers (worker start-up is the cold-start benchmark's business; the makespan
from spawning the workers is reported beside it). Goal: within 15% of the ideal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.harness import (
    Backend,
    WorkerProc,
    backend,
    emulator,
    enqueue,
    fresh_topic,
    median,
    print_result,
    run_workers,
    scratch_dir,
)

TASKS = 200
SECONDS = 0.5
WORKERS = 4
GOAL = 1.15


def run_fleet(
    b: Backend, scratch: Path, tasks: int, seconds: float, workers: int, idle_timeout: float
) -> list[WorkerProc]:
    """Enqueue ``tasks`` sleeps, run ``workers`` workers until they exit idle, and check all ran once."""
    with b.open() as q:
        topic = fresh_topic(q, "fleet")
        enqueue(q, topic, "sleep", [[str(seconds)] for _ in range(tasks)])
    timeout = tasks * seconds / workers * 3 + 60
    procs = run_workers(b.url, topic, scratch, workers, timeout, idle_timeout=idle_timeout)
    done = sum(len(w.times("done")) for w in procs)
    if done != tasks:
        raise RuntimeError(f"{b.name}: the fleet finished {done} of {tasks} tasks")
    return procs


def makespans(procs: list[WorkerProc]) -> tuple[float, float]:
    """(first started -> last done, first spawn -> last done) in seconds."""
    last_done = max(max(w.times("done")) for w in procs)
    first_started = min(min(w.times("started")) for w in procs)
    first_spawn = min(w.spawned_at for w in procs)
    return last_done - first_started, last_done - first_spawn


def run(repeats: int = 3, tasks: int = TASKS, seconds: float = SECONDS, workers: int = WORKERS) -> dict[str, Any]:
    """Median makespans over ``repeats`` fleets on each backend."""
    ideal = tasks * seconds / workers
    out: dict[str, Any] = {"tasks": tasks, "task_seconds": seconds, "workers": workers, "ideal_makespan_s": ideal}
    with emulator():
        for name in ("embedded", "emulator"):
            spans, from_spawn, shares = [], [], []
            for _ in range(repeats):
                with scratch_dir("fleet") as scratch:
                    procs = run_fleet(backend(name, scratch), scratch, tasks, seconds, workers, idle_timeout=2)
                span, spawn_span = makespans(procs)
                spans.append(span)
                from_spawn.append(spawn_span)
                shares.append(sorted(len(w.times("done")) for w in procs))
            span = median(spans)
            out[name] = {
                "makespan_s": round(span, 2),
                "makespan_vs_ideal": round(span / ideal, 3),
                "makespan_from_spawn_s": round(median(from_spawn), 2),
                "all_makespans_s": [round(s, 2) for s in spans],
                "tasks_per_worker": shares,
                "goal_met": span <= ideal * GOAL,
            }
    out["summary"] = "; ".join(
        f"{n}: makespan {out[n]['makespan_s']:g} s = {out[n]['makespan_vs_ideal']:g}x ideal"
        for n in ("embedded", "emulator")
    )
    out["goal"] = f"makespan within {GOAL - 1:.0%} of ideal ({ideal:g} s)"
    out["goal_met"] = all(out[n]["goal_met"] for n in ("embedded", "emulator"))
    return out


if __name__ == "__main__":
    print_result("fleet", run())
