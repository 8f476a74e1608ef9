"""Drain and exit: after its last task, a worker exits within idle_timeout + 2 s.

A drained fleet must stop costing GPU hours. Four workers share a few short tasks
(``common sleep 0.2``) with ``idle_timeout`` = 3 s; for each worker the delay is from
its own last ``done`` to the moment its process has exited (seen by this process),
so it includes the last empty pulls, the idle check, stopping the task process and
closing the queue. The fleet-wide figure is from the last ``done`` of any worker to
the exit of the last worker. The delay is split at the worker's ``idle_exit`` event:
noticing it is idle, then stopping. Goal: every worker within idle_timeout + 2 s.
"""

from __future__ import annotations

from typing import Any

from bench.fleet import run_fleet
from bench.harness import backend, emulator, median, print_result, scratch_dir

IDLE_TIMEOUT = 3.0
SLACK = 2.0


def run(repeats: int = 3, tasks: int = 20, workers: int = 4, idle_timeout: float = IDLE_TIMEOUT) -> dict[str, Any]:
    """Median and worst exit delays over ``repeats`` small fleets on each backend."""
    out: dict[str, Any] = {"idle_timeout_s": idle_timeout, "workers": workers, "tasks": tasks}
    with emulator():
        for name in ("embedded", "emulator"):
            delays, fleet_delays, detect, teardown = [], [], [], []
            for _ in range(repeats):
                with scratch_dir("drain") as scratch:
                    procs = run_fleet(backend(name, scratch), scratch, tasks, 0.2, workers, idle_timeout)
                for w in procs:
                    assert w.exited_at is not None
                    last, idle_exit = max(w.times("done")), w.times("idle_exit")[0]
                    delays.append(w.exited_at - last)
                    detect.append(idle_exit - last)
                    teardown.append(w.exited_at - idle_exit)
                last_done = max(max(w.times("done")) for w in procs)
                fleet_delays.append(max(w.exited_at or 0.0 for w in procs) - last_done)
            out[name] = {
                "exit_after_last_task_median_s": round(median(delays), 2),
                "exit_after_last_task_max_s": round(max(delays), 2),
                "fleet_exit_after_last_task_median_s": round(median(fleet_delays), 2),
                "idle_exit_event_after_last_task_median_s": round(median(detect), 2),
                "process_exit_after_idle_exit_event_median_s": round(median(teardown), 2),
                "goal_met": max(delays) <= idle_timeout + SLACK,
            }
    out["summary"] = "; ".join(
        f"{n}: exit {out[n]['exit_after_last_task_median_s']:g} s after the last task (worst "
        f"{out[n]['exit_after_last_task_max_s']:g} s)"
        for n in ("embedded", "emulator")
    )
    out["goal"] = f"every worker exits within idle_timeout + {SLACK:g} s ({idle_timeout + SLACK:g} s) of its last task"
    out["goal_met"] = all(out[n]["goal_met"] for n in ("embedded", "emulator"))
    return out


if __name__ == "__main__":
    print_result("drain", run())
