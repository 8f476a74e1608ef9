"""Worker rate: demo ``create_windows`` tasks that ONE real worker finishes in 45 s, new code vs old.

One ``rslp worker`` process (the real CLI, its task process included) on the embedded
queue, subscribed to the demo's ``create_windows`` topic, as the fleet runs it. The job
is written by ``rslp write-jobs`` (tasks/demo/pipeline.yaml, a square request from
:func:`bench.scale.request_for`) at about 1.6k and about 97k partitions. The window
opens at the worker's first ``started`` event (its start-up is not counted) and the
figure is the number of ``create_windows`` ``done`` events in the next 45 s. A worker
that drains every ``create_windows`` task sooner (its topic then serves it the
``prepare`` tasks behind them) is rated from its own pace: tasks done / seconds to the
last of them x 45 (``extrapolated`` says so).

The baseline is commit 175f73b (before the per-zone UTM cache and the per-process
pipeline.yaml cache), checked out in a temporary worktree and run with ``PYTHONPATH``
pointing at it, in the same run, alternating with the new code; each run gets a job of
its own at 1.6k, and all runs share one job at 97k (each takes tasks the others left).
Medians of ``repeats`` runs; the load average before and after each run is kept, since
the machine is shared. Goal (issue 22): new/old >= 3x at both sizes.
"""

from __future__ import annotations

import itertools
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.baseline import BASELINE, baseline_tree, short
from bench.harness import REPO, child_env, print_result, scratch_dir
from bench.scale import request_for
from rslp.testing.workers import WorkerProc, epoch

CONFIG = REPO / "tasks" / "demo" / "pipeline.yaml"
STEP = "create_windows"
WINDOW = 45.0
#: Requested sizes: request_for(1_600) plans about 1.6k partitions, request_for(100_000) about 97k.
SIZES = (1_600, 100_000)
GOAL = 3.0


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def write_job(n: int, folder: Path) -> tuple[str, str, int]:
    """A fresh demo job of about ``n`` partitions on an embedded queue: (queue URL, subscription, partitions)."""
    from rslp.jobroot import JobRoot
    from rslp.pipeline.config import load_pipeline_config

    folder.mkdir(parents=True)
    queue = f"local://{folder / 'queue.db'}"
    cmd = [sys.executable, "-m", "rslp.cli", "write-jobs", "--config", str(CONFIG)]
    cmd += ["--request", str(request_for(n, folder)), "--job_root", str(folder / "job"), "--queue", queue]
    subprocess.run(cmd, capture_output=True, text=True, env=child_env(), cwd=REPO, check=True, timeout=900)
    partitions = JobRoot(folder / "job").read_manifest().partition_count
    return queue, load_pipeline_config(str(CONFIG)).topics[STEP], partitions


def rate(queue: str, subscription: str, scratch: Path, code: Path, left: int, window: float) -> dict[str, Any]:
    """One worker running ``code``'s rslp: STEP tasks done in ``window`` seconds from its first task."""
    before = loadavg()
    scratch.mkdir(parents=True)
    # Pipeline tasks only: no --allow_diagnostics, a flag the old code does not know.
    env = {**child_env(), "PYTHONPATH": str(code)}
    worker = WorkerProc(queue, subscription, cwd=scratch, env=env, scratch_root=str(scratch / "worker-scratch"))
    try:
        opened = epoch(worker.wait_for("started", timeout=180))
        while time.time() < opened + window and worker.proc.poll() is None:
            if sum(e.get("event") == "done" and e.get("step") == STEP for e in worker.events) >= left:
                break
            time.sleep(0.2)
        worker.signal(signal.SIGTERM)
        worker.wait(120)
    finally:
        if worker.proc.poll() is None:
            worker.proc.kill()
    done = sorted(epoch(e) for e in worker.events if e.get("event") == "done" and e.get("step") == STEP)
    in_window = [t for t in done if t <= opened + window]
    drained = len(done) >= left and bool(done) and done[-1] < opened + window
    tasks = len(in_window) / (done[-1] - opened) * window if drained else float(len(in_window))
    # The worker's own account: its task process's time per task, and done to done (the rest is the worker's).
    durations = [float(e["duration"]) for e in worker.events if e.get("event") == "done" and e.get("step") == STEP]
    gaps = [b - a for a, b in itertools.pairwise(in_window)]
    return {
        "tasks": round(tasks),
        "done": len(done),
        "extrapolated": drained,
        "load": f"{before} / {loadavg()}",
        "task_process_ms": round(statistics.median(durations) * 1000, 1) if durations else None,
        "done_to_done_ms": round(statistics.median(gaps) * 1000, 1) if gaps else None,
    }


def measure(n: int, repeats: int, window: float, base: Path, scratch: Path) -> dict[str, Any]:
    """Alternating old and new runs at about ``n`` partitions; medians and every run."""
    runs: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
    shared = write_job(n, scratch / f"job-{n}") if n > 10_000 else None
    taken = 0
    partitions = shared[2] if shared else 0
    for r in range(repeats):
        for name in ("old", "new") if r % 2 == 0 else ("new", "old"):
            if shared is None:
                queue, subscription, partitions = write_job(n, scratch / f"job-{n}-{r}-{name}")
                left = partitions
            else:
                queue, subscription, _ = shared
                left = partitions - taken
            code = base if name == "old" else REPO
            run = rate(queue, subscription, scratch / f"worker-{n}-{r}-{name}", code, left, window)
            taken += run["done"] if shared else 0
            runs[name].append(run)
            print(f"   worker_rate: N={partitions} {name} run {r + 1}: {run}", file=sys.stderr, flush=True)
    old = statistics.median(x["tasks"] for x in runs["old"])
    new = statistics.median(x["tasks"] for x in runs["new"])
    split = {
        f"{name}_{key}": statistics.median(x[key] for x in runs[name] if x.get(key) is not None)
        for name in runs
        for key in ("task_process_ms", "done_to_done_ms")
        if any(x.get(key) is not None for x in runs[name])
    }
    return {
        "partitions": partitions,
        **split,
        "old_tasks": old,
        "new_tasks": new,
        "ratio": round(new / old, 2) if old else None,
        # Each run's new/old against the run of the other code beside it: the load drifts less within a pair.
        "pair_ratios": [round(n["tasks"] / o["tasks"], 2) for o, n in zip(runs["old"], runs["new"], strict=True)],
        "new_ms_per_task": round(window / new * 1000, 1) if new else None,
        "old_ms_per_task": round(window / old * 1000, 1) if old else None,
        "runs": runs,
    }


def run(sizes: tuple[int, ...] = SIZES, repeats: int = 3, window: float = WINDOW) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    with baseline_tree() as base, scratch_dir("worker-rate") as scratch:
        for n in sizes:
            rows[f"n_{n}"] = measure(n, repeats, window, base, scratch)
    ratios = [r["ratio"] or 0.0 for r in rows.values()]
    return {
        **rows,
        "baseline": short(BASELINE),
        "window_s": window,
        "repeats": repeats,
        "summary": "; ".join(
            f"{r['partitions']} partitions: {r['new_tasks']:g} vs {r['old_tasks']:g} tasks in {window:g} s "
            f"= {r['ratio']}x"
            for r in rows.values()
        ),
        "goal": f"one worker finishes >= {GOAL:g}x the {STEP} tasks of {short(BASELINE)} in {window:g} s at every size",
        "goal_met": all(x >= GOAL for x in ratios),
    }


def markdown(result: dict[str, Any]) -> list[str]:
    """The figures as a table: one row per size, every run's count and load beside the medians."""
    lines = [
        f"| partitions | old ({result['baseline']}) tasks in {result['window_s']:g} s | new tasks | new / old "
        "| old ms/task | new ms/task | old runs | new runs | new / old by pair "
        "| load before / after each run (old; new) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, r in result.items():
        if not key.startswith("n_"):
            continue
        runs = {
            name: ", ".join(f"{x['tasks']}{'*' if x['extrapolated'] else ''}" for x in r["runs"][name])
            for name in r["runs"]
        }
        loads = "; ".join(" · ".join(x["load"] for x in r["runs"][name]) for name in ("old", "new"))
        lines.append(
            f"| {r['partitions']} | {r['old_tasks']:g} | {r['new_tasks']:g} | {r['ratio']} | {r['old_ms_per_task']} "
            f"| {r['new_ms_per_task']} | {runs['old']} | {runs['new']} | {', '.join(map(str, r['pair_ratios']))} "
            f"| {loads} |"
        )
    lines += ["", "\\* extrapolated: the worker drained every create_windows task before the window closed."]
    split = [
        f"{r['partitions']} partitions: task process {r['old_task_process_ms']:g} → {r['new_task_process_ms']:g} ms, "
        f"done to done {r['old_done_to_done_ms']:g} → {r['new_done_to_done_ms']:g} ms"
        for key, r in result.items()
        if key.startswith("n_") and {"old_done_to_done_ms", "new_done_to_done_ms"} <= set(r)
    ]
    if split:
        lines += ["", "Median per task in the worker's own account, old → new: " + "; ".join(split) + "."]
    return lines


TITLE = "14. Worker rate: demo create_windows tasks one worker finishes in 45 s, new vs 175f73b"

if __name__ == "__main__":
    from bench import sections

    print_result("worker_rate", sections.main(TITLE, "worker_rate"))
