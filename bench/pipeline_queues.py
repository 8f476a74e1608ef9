"""Pipeline on Pub/Sub: the demo job at 16 partitions, 2 workers, emulator against the embedded queue.

The demo pipeline with 128 px partitions (``cell_size: 128``, 16 partitions over the
demo request) is enqueued by ``write_jobs`` and run by 2 real worker processes that
serve all of the pipeline's subscriptions, later steps first (``demo-combine,demo-gpu,
demo-cpu``), the way a user runs it on a fleet. The same harness runs it once on the
Pub/Sub emulator (a fresh project per run, so runs never share topics) and once on the
embedded queue. Time: from spawning the workers (they start while write_jobs runs, as
``rslp run`` does) to the last task's ``done``. The runs of the per-job steps (combine,
observe) are counted, including the duplicates skipped by their done marker. Goal: the
emulator within 1.3x of the embedded queue, in the same run.

Beside it, each scene's fetches: the job's partitions share one tile store
(rslp/pipeline/tiles.py), and every write into it logs ``tile_stored`` with the bytes
the data source fetched for it; their sum over the job, against the bytes of the
distinct scenes, is ``fetched_vs_unique_scene_bytes`` (the worst run; 1.0 is each scene
once). With a tile store per partition it was 4.0 here: each of the 4 scenes overlaps
4 of the 16 partitions.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import yaml

from bench.harness import PROJECT, WorkerProc, median, print_result, scratch_dir
from bench.harness import emulator as running_emulator
from rslp.pipeline.demo import DEMO_DIR, DEMO_SCENE, ensure_scene

GOAL = 1.3
DEMO_FILES = ("pipeline.yaml", "dataset.json", "model.yaml", "checkpoint.ckpt", "request.geojson")


def demo_variant(folder: Path, cell_size: int) -> Path:
    """The demo pipeline copied to ``folder`` with partitions of ``cell_size`` px; returns its pipeline.yaml."""
    ensure_scene(DEMO_SCENE, DEMO_DIR / "data")
    for name in DEMO_FILES:
        shutil.copy(DEMO_DIR / name, folder / name)
    # The demo's own images, by their real path: LocalFiles caches the paths it lists in
    # a summary.json beside the images, which a path through this temporary folder
    # would leave stale for the next run.
    dataset = folder / "dataset.json"
    dataset.write_text(dataset.read_text().replace("${CONFIG_DIR}/data", str(DEMO_DIR / "data")))
    config = yaml.safe_load((folder / "pipeline.yaml").read_text())
    config["partitioner"]["init_args"]["cell_size"] = cell_size
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder / "pipeline.yaml"


def run_job(queue: str, scratch: Path, cell_size: int, workers: int, idle_timeout: float) -> dict[str, Any]:
    """Enqueue the demo variant on ``queue``, run ``workers`` workers until idle; seconds and counts."""
    from rslp.pipeline.config import load_pipeline_config, subscriptions
    from rslp.pipeline.write_jobs import write_jobs
    from rslp.queue import open_queue

    demo = scratch / "demo"
    demo.mkdir()
    config = demo_variant(demo, cell_size)
    pipeline = load_pipeline_config(config)
    subs = subscriptions(pipeline.partition_steps + pipeline.job_steps, pipeline.topics)
    with open_queue(queue, create=True) as q:
        for sub in subs:
            q.setup(sub, sub)
    procs = [WorkerProc(queue, ",".join(subs), scratch, idle_timeout=idle_timeout) for _ in range(workers)]
    try:
        write_jobs(str(config), str(demo / "request.geojson"), str(scratch / "job"), queue=queue)
        for w in procs:
            w.wait(timeout=900)
    finally:
        for w in procs:
            w.kill()
    done = [e for w in procs for e in w.events if e.get("event") == "done"]
    skipped = [e for w in procs for e in w.events if e.get("event") == "skipped_done"]
    if not any(e.get("step") == "combine" for e in done):
        raise RuntimeError(f"{queue}: the workers exited but no combine task finished")
    stored = [e for w in procs for e in w.events if e.get("event") == "tile_stored"]
    unique = {(e["layer"], e["item"]): int(e["source_bytes"]) for e in stored}
    spawned = min(w.spawned_at for w in procs)
    return {
        "finished": max(w.times("done")[-1] for w in procs if w.times("done")) - spawned,
        "tasks": len(done),
        "partitions": len({e.get("partition") for e in done if e.get("step") == "predict"}),
        "scenes_fetched": len(stored),
        "source_bytes_fetched": sum(int(e["source_bytes"]) for e in stored),
        "unique_scene_bytes": sum(unique.values()),
        "runs_by_job_step": {
            step: {
                "done": sum(e.get("step") == step for e in done),
                "skipped": sum(e.get("step") == step for e in skipped),
            }
            for step in pipeline.job_steps
        },
    }


def run(repeats: int = 5, cell_size: int = 128, workers: int = 2, idle_timeout: float = 10.0) -> dict[str, Any]:
    """Median time to the last task over ``repeats`` jobs on each backend, alternating.

    Five pairs: on a shared 2-core machine one job's predict alone varies by 2x between
    runs (measured 11 s to 18 s of predict in one worker), more than the goal's margin.
    """
    results: dict[str, list[dict[str, Any]]] = {"embedded": [], "emulator": []}
    with running_emulator():
        for _ in range(repeats):
            for name in results:
                with scratch_dir("pipeline-queues") as scratch:
                    queue = (
                        f"local://{scratch / 'queue.db'}"
                        if name == "embedded"
                        else f"pubsub://{PROJECT}-{uuid.uuid4().hex[:8]}"
                    )
                    results[name].append(run_job(queue, scratch, cell_size, workers, idle_timeout))
    out: dict[str, Any] = {"cell_size": cell_size, "workers": workers, "repeats": repeats}
    for name, runs in results.items():
        out[name] = {
            "finished_s": round(median([r["finished"] for r in runs]), 2),
            "all_finished_s": [round(r["finished"], 2) for r in runs],
            "tasks": runs[0]["tasks"],
            "partitions": runs[0]["partitions"],
            "runs_by_job_step": [r["runs_by_job_step"] for r in runs],
            "scenes_fetched": [r["scenes_fetched"] for r in runs],
            "fetched_vs_unique_scene_bytes": max(r["source_bytes_fetched"] / r["unique_scene_bytes"] for r in runs),
        }
    ratio = out["emulator"]["finished_s"] / out["embedded"]["finished_s"]
    out["ratio"] = round(ratio, 2)
    out["summary"] = (
        f"{out['emulator']['partitions']} partitions, {workers} workers: emulator {out['emulator']['finished_s']:g} s "
        f"vs embedded {out['embedded']['finished_s']:g} s = {ratio:.2f}x"
    )
    out["goal"] = f"emulator within {GOAL:g}x of the embedded queue"
    out["goal_met"] = ratio <= GOAL
    return out


if __name__ == "__main__":
    print_result("pipeline_queues", run())
