"""Task cost: where a pipeline task's time goes beyond its rslearn work, and what the first task pays.

Measured in a fresh process per code tree (the new code and commit 175f73b, in the same
run), on a demo job of about 1.6k partitions (tasks/demo/pipeline.yaml, a square
request from :func:`bench.scale.request_for`), doing per task what the fleet does:

- **worker**: :func:`guard.admit` (reads the header, looks for a done marker), the
  ``running`` marker, the ``done`` marker; the queue's pull, ack and publish are not
  here (bench/overhead.py measures a no-op task through a real worker: about 4 ms);
- **task process**: ``Workflow.parse_args`` (175f73b: a jsonargparse parser built for
  each task from the step's signature; the new code's task process gets the task itself
  and the header the guard read, and parses nothing), then the step
  (``steps.create_windows``), split into ``Job.load`` (175f73b: header + cached
  pipeline.yaml; new: the process's validated config), ``Job.partition`` (its record),
  ``Job.dataset_config``, rslearn's ``Dataset`` opening (``open_dataset``),
  ``Window.save`` (the work: one metadata.json per window), the read-back check
  (``Dataset.load_windows``) and the rest (``step: rest``: the window partitioner, a
  generator run inside the step, and the step's own code).

Each part is timed by wrapping the function in this process (no production code is
changed): median wall ms per task over ``tasks`` tasks, after one warm-up task. The
warm-up itself is the **first task** of a fresh task process: its wall and CPU seconds
minus a steady task's are the imports it pays (rslearn, jsonargparse, pydantic
models...), which the fleet pays inside the first task's duration. A pyinstrument
profile of the steady tasks (new code) is kept beside the figures. Goal (issue 22): a
steady task at least 3x faster than the baseline's.
"""

from __future__ import annotations

import functools
import json
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: (label, module, attribute path) of each part timed, in the order a task meets them.
PARTS = (
    ("worker: guard.admit", "rslp.worker.guard", "admit"),
    ("worker: markers (running + done)", "rslp.jobroot.root", "JobRoot.mark"),
    ("task: parse_args", "rslp.registry", "Workflow.parse_args"),
    ("task: step (all of it)", "rslp.pipeline.steps", "create_windows"),
    ("step: Job.load", "rslp.pipeline.job", "Job.load"),
    ("step: Job.partition", "rslp.pipeline.job", "Job.partition"),
    ("step: Job.dataset_config", "rslp.pipeline.job", "Job.dataset_config"),
    ("step: open_dataset", "rslp.pipeline.rslearn_ops", "open_dataset"),
    ("step: Window.save (the work)", "rslearn.dataset.window", "Window.save"),
    ("step: load_windows (read-back)", "rslearn.dataset.dataset", "Dataset.load_windows"),
)
STEP = "create_windows"
#: Where a part lived in the baseline's code (before issue 22), where it has moved since.
BEFORE_ISSUE_22 = {("rslp.jobroot.root", "JobRoot.mark"): ("rslp.ledger", "Ledger.mark")}
SIZE = 1_600


#: The timings of the task now running: the wrappers add to it.
_CURRENT: list[dict[str, float]] = [defaultdict(float)]


def _wrap(label: str, module: str, attr: str) -> None:
    """Replace ``module.attr`` with a wrapper that adds its wall seconds to the current task's ``label``."""
    import importlib

    try:
        owner: Any = importlib.import_module(module)
    except ModuleNotFoundError:
        module, attr = BEFORE_ISSUE_22[(module, attr)]
        owner = importlib.import_module(module)
    *path, name = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    real = owner.__dict__[name]
    is_class = isinstance(real, classmethod)
    fn: Callable[..., Any] = real.__func__ if is_class else real
    depth = [0]  # a part that calls itself (or is called inside itself) is counted once

    @functools.wraps(fn)  # the registry's parser reads the step's signature through it
    def timed(*args: Any, **kwargs: Any) -> Any:
        depth[0] += 1
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            depth[0] -= 1
            if depth[0] == 0:
                _CURRENT[0][label] += time.perf_counter() - started

    setattr(owner, name, classmethod(timed) if is_class else timed)


def child(job_root: str, tasks: int, profile: bool) -> None:
    """Run 1 + ``tasks`` create_windows tasks as the worker and task process do; print JSON figures."""
    started, cpu = time.perf_counter(), time.process_time()
    from rslp import log, registry  # what the task process has imported before its first task

    log.setup()
    try:
        from rslp.jobroot import JobRoot
    except ImportError:  # the baseline's code, from before issue 22: the same class, named Ledger
        from rslp.ledger import Ledger as JobRoot  # type: ignore[no-redef]
    from rslp.pipeline.job import make_task
    from rslp.worker import guard

    manifest = JobRoot(job_root).read_manifest()
    pids = list(manifest.partition_ids())[: tasks + 1]
    boot = {"wall": time.perf_counter() - started, "cpu": time.process_time() - cpu}
    per_task: dict[str, list[float]] = defaultdict(list)
    totals: list[tuple[float, float]] = []
    profiler = None
    for i, pid in enumerate(pids):
        times: dict[str, float] = defaultdict(float)
        if i == 1:  # after the warm-up: wrap the parts (their modules are imported now) and start profiling
            for label, module, attr in PARTS:
                _wrap(label, module, attr)
            if profile:
                from pyinstrument import Profiler

                profiler = Profiler(interval=0.0005)
                profiler.start()
        _CURRENT[0] = times
        task = make_task(manifest.job_id, job_root, STEP, pid)
        t0, c0 = time.perf_counter(), time.process_time()
        admitted = guard.admit(task)
        ledger = JobRoot(job_root)
        ledger.mark(task, "running", worker="bench", lease_seconds=60, heartbeat=time.time())
        workflow = registry.get("pipeline", STEP)
        if hasattr(workflow, "run_task"):  # the task itself and the header the guard read (issue 22)
            downstream = workflow.run_task(task, admitted.manifest)
        else:  # 175f73b: the task's args, parsed in the task process
            downstream = workflow.run(task.args)
        ledger.mark(task, "done", worker="bench", duration=0.0, downstream=[d.model_dump() for d in downstream])
        totals.append((time.perf_counter() - t0, time.process_time() - c0))
        if i > 0:
            for label, _, _ in PARTS:
                per_task[label].append(times[label])
            inside = sum(v for k, v in times.items() if k.startswith("step: "))
            per_task["step: rest"].append(times["task: step (all of it)"] - inside)
    if profiler is not None:
        profiler.stop()
    first_wall, first_cpu = totals[0]
    steady_wall = statistics.median(t for t, _ in totals[1:])
    steady_cpu = statistics.median(c for _, c in totals[1:])
    out = {
        "boot_s": round(boot["wall"], 3),
        "first_task_s": round(first_wall, 3),
        "first_task_cpu_s": round(first_cpu, 3),
        "first_task_extra_s": round(first_wall - steady_wall, 3),
        "first_task_extra_cpu_s": round(first_cpu - steady_cpu, 3),
        "task_ms": round(steady_wall * 1000, 2),
        "task_cpu_ms": round(steady_cpu * 1000, 2),
        "parts_ms": {label: round(statistics.median(v) * 1000, 2) for label, v in per_task.items()},
    }
    if profiler is not None:
        out["profile"] = profiler.output_text(unicode=False, color=False, show_all=False)
    print(json.dumps(out))


def measure(code: Path, job_root: Path, tasks: int, profile: bool) -> dict[str, Any]:
    from bench.baseline import child_command
    from bench.harness import child_env

    cmd = child_command(Path(__file__).resolve(), str(job_root), str(tasks), "1" if profile else "0")
    env = {**child_env(), "PYTHONPATH": str(code)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=job_root.parent, timeout=600)
    if proc.returncode:
        raise RuntimeError(f"task cost under {code} failed: {proc.stderr.strip()[-1500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run(size: int = SIZE, tasks: int = 40, repeats: int = 3) -> dict[str, Any]:
    """Both codes, alternating, ``repeats`` times each on jobs of their own; medians."""
    from bench.baseline import BASELINE, baseline_tree, short
    from bench.harness import REPO, scratch_dir
    from bench.pipeline import demo_data
    from bench.worker_rate import write_job

    demo_data()
    runs: dict[str, list[dict[str, Any]]] = {"new": [], "old": []}
    with baseline_tree() as base, scratch_dir("task-cost") as scratch:
        for r in range(repeats):
            for name, code in (("new", REPO), ("old", base)):
                folder = scratch / f"{name}-{r}"
                write_job(size, folder)
                runs[name].append(measure(code, folder / "job", tasks, profile=name == "new" and r == 0))
    result: dict[str, Any] = {"tasks": tasks, "repeats": repeats, "baseline": short(BASELINE)}
    for name, rs in runs.items():
        result[name] = {
            key: round(statistics.median(x[key] for x in rs), 3)
            for key in ("task_ms", "task_cpu_ms", "first_task_s", "first_task_cpu_s", "first_task_extra_s")
        }
        result[name]["parts_ms"] = {
            label: round(statistics.median(x["parts_ms"][label] for x in rs), 2) for label in rs[0]["parts_ms"]
        }
    result["pyinstrument"] = runs["new"][0].get("profile", "")
    new, old = result["new"], result["old"]
    result["goal"] = "a create_windows task in-process at least 3x faster than the baseline (issue 22)"
    result["goal_met"] = old["task_ms"] >= 3 * new["task_ms"]
    result["summary"] = (
        f"a {STEP} task in-process {new['task_ms']:g} ms (old {old['task_ms']:g} ms); "
        f"a fresh task process's first task pays {new['first_task_extra_s']:g} s more (imports)"
    )
    return result


def markdown(result: dict[str, Any]) -> list[str]:
    """Parts of a steady task (old and new), the first task's extra, the profile."""
    new, old = result["new"], result["old"]
    lines = [f"| part (median wall ms per task) | old ({result['baseline']}) | new |", "|---|---|---|"]
    lines += [f"| {label} | {old['parts_ms'][label]:g} | {v:g} |" for label, v in new["parts_ms"].items()]
    for key, what in (
        ("task_ms", "whole task in-process, wall ms"),
        ("task_cpu_ms", "whole task in-process, CPU ms"),
        ("first_task_s", "first task of a fresh task process, wall s"),
        ("first_task_cpu_s", "first task of a fresh task process, CPU s"),
        ("first_task_extra_s", "first task's extra over a steady one, wall s"),
    ):
        lines.append(f"| {what} | {old[key]:g} | {new[key]:g} |")
    lines += ["", "Profile of the new code's steady tasks (pyinstrument, one run):", "", "```text"]
    lines += [result["pyinstrument"].strip("\n"), "```"]
    return lines


TITLE = "16. Task cost: where a create_windows task's time goes, 175f73b vs new"

if __name__ == "__main__":
    if len(sys.argv) == 4:  # the child: JOB_ROOT TASKS PROFILE
        child(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1")
    else:
        from bench import sections
        from bench.harness import print_result

        print_result("task_cost", sections.main(TITLE, "task_cost"))
