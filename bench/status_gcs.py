"""Status on object storage: ``rslp status`` of a big job whose root is on the GCS emulator.

A job of N partitions with a done marker for every partition step (N x 6 markers, as
the worker writes them) on a bucket of the GCS emulator started here
(``rslp.testing.gcs_emulator``). Timed: the ``rslp
status --job_root gs://...`` command end to end in a fresh process (imports included),
and :func:`rslp.status.model.collect` in this process (the listings and the rest).
GCS lists 1,000 names a call, so the markers of a step cost N/1000 sequential calls;
the emulator is one single-threaded HTTP server on this machine, so the figure is an
order of magnitude, not a prediction for Cloud Storage. Goal: under 10 s at 2,000
partitions (12,000 markers).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from typing import Any

from bench.harness import REPO, median, print_result

STEPS = ["create_windows", "prepare", "ingest", "materialize", "predict", "postprocess"]
GOAL_S = 10.0


def build_job(job_root: str, partitions: int) -> int:
    """Write the manifest and a done marker per partition and step; returns the marker count."""
    import fsspec

    from rslp.jobroot import JobManifest, JobRoot
    from rslp.pipeline.job import make_task

    side = math.ceil(math.sqrt(partitions))
    records = []
    for i in range(partitions):
        x, y = -122.0 + (i % side) * 0.01, 37.0 + (i // side) * 0.01
        ring = [[x, y], [x + 0.01, y], [x + 0.01, y + 0.01], [x, y + 0.01], [x, y]]
        records.append({"geometry": {"type": "Polygon", "coordinates": [ring]}})
    header = JobManifest(
        job_id="bench-status",
        job_root=job_root,
        config="pipeline.yaml",
        request="request.geojson",
        queue=None,  # status then reads only the job root: the figure is storage's alone
        steps=STEPS,
        job_steps=["combine"],
        topics={s: "bench-cpu" for s in [*STEPS, "combine"]},
    )
    ledger = JobRoot(job_root)
    manifest = ledger.write_job(header, records)
    # One object at a time: the emulator is a single-threaded HTTP server, and gcsfs's
    # concurrent batches against it stall on timeouts (100 objects took 110 s).
    fs = fsspec.filesystem("gs")
    count = 0
    for step in STEPS:
        for pid in manifest.partition_ids():
            task = make_task(manifest.job_id, job_root, step, pid)
            payload = {"task": task.model_dump(mode="json"), "state": "done", "time": time.time(), "worker": "w-1"}
            fs.pipe_file(ledger.marker_path(step, task.task_id, "done").path, json.dumps(payload).encode())
            count += 1
    return count


def run(partitions: int = 2000, repeats: int = 3) -> dict[str, Any]:
    """Median time of ``rslp status`` and of collect() on a gs:// job of ``partitions`` partitions."""
    import fsspec

    from rslp.status.model import collect
    from rslp.testing.gcs_emulator import BUCKET, running_gcs_emulator

    with running_gcs_emulator():
        job_root = f"gs://{BUCKET}/jobs/bench-status"
        started = time.monotonic()
        markers = build_job(job_root, partitions)
        build_s = time.monotonic() - started
        cli, inproc = [], []
        fs = fsspec.filesystem("gs")
        for _ in range(repeats):
            started = time.monotonic()
            done = subprocess.run(
                [sys.executable, "-m", "rslp.cli", "status", "--job_root", job_root],
                capture_output=True,
                text=True,
                cwd=REPO,
                env=os.environ.copy(),
                timeout=600,
            )
            cli.append(time.monotonic() - started)
            if done.returncode != 0:
                raise RuntimeError(f"rslp status failed: {done.stderr[-500:]}")
            fs.invalidate_cache()  # gcsfs caches listings in-process: time fresh ones
            started = time.monotonic()
            status = collect(job_root)
            inproc.append(time.monotonic() - started)
        done_tasks = sum(s.counts["done"] for s in status.steps)
        if done_tasks != markers:
            raise RuntimeError(f"status counted {done_tasks} done tasks, expected {markers}")
    out: dict[str, Any] = {
        "partitions": partitions,
        "markers": markers,
        "repeats": repeats,
        "writing_markers_s": round(build_s, 1),
        "rslp_status_cli_median_s": round(median(cli), 2),
        "collect_median_s": round(median(inproc), 2),
    }
    out["summary"] = (
        f"{markers} markers on the GCS emulator: rslp status {out['rslp_status_cli_median_s']:g} s "
        f"(collect {out['collect_median_s']:g} s)"
    )
    out["goal"] = f"rslp status under {GOAL_S:g} s at {partitions} partitions on the GCS emulator"
    out["goal_met"] = median(cli) < GOAL_S
    return out


if __name__ == "__main__":
    print_result("status_gcs", run(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
