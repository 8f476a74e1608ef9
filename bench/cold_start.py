"""Cold start: from spawning a worker process to its first task pulled.

- No-op worker: one ``common noop`` task queued, then ``python -m rslp.cli worker``
  spawned; timed from ``Popen`` to the worker's ``received`` event (and to
  ``worker_started`` and the first ``done``), on the embedded queue and on the emulator.
  Goal: under 2 s. An extra run with ``PYTHONPROFILEIMPORTTIME=1`` (inherited by the
  task process) checks that neither process imports torch, lightning or rslearn, and
  lists the costliest top-level imports.
- Predict worker: the demo job is prepared up to materialize (the pipeline
  benchmark's floor, stopped early), then a worker pulls its 4 predict tasks from an
  embedded queue. Timed to the first task pulled and to the first predict done (torch,
  lightning and the model loaded in the task process); the first predict's duration
  against the others' shows the model is loaded once per process, and the count of
  ``model loaded`` events must be 1.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from bench.harness import (
    WorkerProc,
    backend,
    emulator,
    enqueue,
    fresh_topic,
    median,
    print_result,
    scratch_dir,
)
from bench.pipeline import run_floor

GOAL_S = 2.0
HEAVY = ("torch", "lightning", "rslearn")


def noop_start(name: str) -> dict[str, float]:
    """One no-op worker's start-up on backend ``name``: seconds from spawn to each milestone."""
    with scratch_dir("cold") as scratch:
        b = backend(name, scratch)
        with b.open() as q:
            topic = fresh_topic(q, "cold")
            enqueue(q, topic, "noop", [[]])
        w = WorkerProc(b.url, topic, scratch, idle_timeout=1)
        w.wait(60)
    return {
        "worker_started": w.times("worker_started")[0] - w.spawned_at,
        "received": w.times("received")[0] - w.spawned_at,
        "first_done": w.times("done")[0] - w.spawned_at,
    }


def import_probe() -> dict[str, Any]:
    """Which heavy packages a no-op worker (both processes) imports, and its costliest imports."""
    with scratch_dir("imports") as scratch:
        b = backend("embedded", scratch)
        with b.open() as q:
            topic = fresh_topic(q, "imports")
            enqueue(q, topic, "noop", [[]])
        w = WorkerProc(b.url, topic, scratch, env={"PYTHONPROFILEIMPORTTIME": "1"}, idle_timeout=1)
        w.wait(60)
    modules: list[str] = []
    top: list[tuple[int, str]] = []
    for line in w.raw:
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = (part for part in line.removeprefix("import time:").split("|"))
        if not cumulative.strip().isdigit():
            continue  # the header line
        modules.append(name.strip())
        if not name.startswith("  "):
            top.append((int(cumulative), name.strip()))
    imported = {pkg: any(m == pkg or m.startswith(f"{pkg}.") for m in modules) for pkg in HEAVY}
    costliest = [f"{mod} {us / 1000:.0f} ms" for us, mod in sorted(top, reverse=True)[:8]]
    return {"imports_heavy": imported, "costliest_top_level_imports_both_processes": costliest}


def predict_start(prepared: Path, scratch: Path) -> dict[str, float]:
    """A predict worker on a copy of the prepared job: start-up and per-task durations."""
    from rslp.jobroot import JobRoot
    from rslp.pipeline.job import make_task
    from rslp.queue import Outgoing

    root = scratch / "job"
    shutil.copytree(prepared, root)
    ledger = JobRoot(root)  # the copy is a job of its own: its downstream tasks must name it, not the original
    manifest = ledger.read_manifest().model_copy(update={"job_root": str(root)})
    ledger.write_manifest(manifest)
    partitions = sorted(p.name for p in (root / "partitions").iterdir())
    b = backend("embedded", scratch)
    with b.open() as q:
        for recorded in set(manifest.topics.values()):  # where predict's downstream goes: kept, never pulled
            q.setup(recorded, recorded)
        topic = fresh_topic(q, "predict")
        tasks = [make_task("floor", str(root), "predict", p) for p in partitions]
        q.publish(topic, [Outgoing(t.encode()) for t in tasks])
    w = WorkerProc(b.url, topic, scratch, idle_timeout=1)
    w.wait(300)
    durations = [float(e["duration"]) for e in w.events if e["event"] == "done"]
    if len(durations) != len(partitions):
        raise RuntimeError(f"predict worker finished {len(durations)} of {len(partitions)}: {w.events[-5:]}")
    return {
        "received": w.times("received")[0] - w.spawned_at,
        "first_done": w.times("done")[0] - w.spawned_at,
        "first_task": durations[0],
        "later_tasks": median(durations[1:]),
        "model_loads": float(sum(e["event"] == "model loaded" for e in w.events)),
    }


def run(repeats: int = 5, predict_repeats: int = 2) -> dict[str, Any]:
    """Median start-up times: ``repeats`` no-op workers per backend, ``predict_repeats`` predict workers."""
    out: dict[str, Any] = {"repeats": repeats}
    with emulator():
        for name in ("embedded", "emulator"):
            runs = [noop_start(name) for _ in range(repeats)]
            out[f"noop_{name}"] = {k: round(median([r[k] for r in runs]), 3) for k in runs[0]}
            out[f"noop_{name}"]["all_received_s"] = [round(r["received"], 3) for r in runs]
    out["noop_imports"] = import_probe()
    with scratch_dir("predict-prep") as prep:
        run_floor(prep / "job", until="materialize")  # the predict tasks' inputs
        runs = []
        for i in range(predict_repeats):
            with scratch_dir(f"predict-{i}") as scratch:
                runs.append(predict_start(prep / "job", scratch))
    out["predict"] = {k: round(median([r[k] for r in runs]), 3) for k in runs[0]}
    out["predict"]["repeats"] = predict_repeats
    out["summary"] = (
        f"no-op worker: first task pulled {out['noop_embedded']['received']:g} s (embedded), "
        f"{out['noop_emulator']['received']:g} s (emulator) after spawn; predict worker: pulled "
        f"{out['predict']['received']:g} s, first predict done {out['predict']['first_done']:g} s, "
        f"first predict {out['predict']['first_task']:g} s then {out['predict']['later_tasks']:g} s each"
    )
    worst = max(out["noop_embedded"]["received"], out["noop_emulator"]["received"])
    out["goal"] = f"no-op worker: spawn to first task pulled < {GOAL_S:g} s, without torch/lightning/rslearn"
    out["goal_met"] = worst < GOAL_S and not any(out["noop_imports"]["imports_heavy"].values())
    return out


if __name__ == "__main__":
    print_result("cold_start", run())
