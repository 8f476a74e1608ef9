"""The demo pipeline end to end with real worker processes on the embedded queue.

request -> write_jobs -> 2 local workers (the worker CLI) -> merged GeoTIFF, scored
against the synthetic labels; the same with a worker killed mid-predict (same bytes);
write_jobs rerun on a finished job; and bad input surfacing as one line from ``rslp run``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rasterio
from matplotlib.image import imread

from rslp.errors import PermanentError
from rslp.jobroot import JobRoot
from rslp.pipeline.config import subscriptions
from rslp.pipeline.demo import DEMO_DIR, DEMO_SCENE, ensure_scene, score
from rslp.pipeline.job import Job
from rslp.pipeline.run import run, worker_command
from rslp.pipeline.write_jobs import write_jobs
from rslp.queue import open_queue
from tests.conftest import stop_when_finished

pytestmark = pytest.mark.slow

#: Measured 0.978 on the demo request (model trained on another synthetic scene).
ACCURACY_THRESHOLD = 0.95
CONFIG, REQUEST = str(DEMO_DIR / "pipeline.yaml"), str(DEMO_DIR / "request.geojson")


def test_the_demo_run_is_clean_and_scores_its_prediction(demo_job: Path) -> None:
    console = (demo_job / "console.txt").read_text()
    assert "leaked semaphore" not in console, "a worker's task process was killed instead of closed"
    stdout = (demo_job / "stdout.txt").read_text()
    assert f"merged output: {demo_job}/output/prediction.tif" in stdout
    assert "pixel accuracy against the synthetic labels: 0.9" in stdout


def backlog(job_root: Path) -> int:
    manifest = JobRoot(job_root).read_manifest()
    with open_queue(str(manifest.queue)) as q:
        subs = subscriptions(manifest.steps + manifest.job_steps, manifest.topics)
        return sum(c.backlog + (c.in_flight or 0) for c in (q.counts(s) for s in subs) if c is not None)


def test_demo_with_two_workers_makes_the_expected_geotiff(demo_job: Path) -> None:
    (output,) = Job.load(str(demo_job)).output_paths()
    with rasterio.open(output.path) as f:
        assert f.crs.to_epsg() == 32610 and f.res == (10.0, 10.0)
        assert f.bounds == (550690.0, 4175900.0, 555110.0, 4180210.0)  # the request's box on the 10 m grid
    assert score(output.path) > ACCURACY_THRESHOLD
    workers = {json.loads(p.read_text())["worker"] for p in (demo_job / "markers").glob("*/*.done.json")}
    assert len(workers) == 2, "both workers should have done tasks"


def test_rerunning_write_jobs_on_a_finished_job_publishes_nothing(demo_job: Path) -> None:
    assert backlog(demo_job) == 0
    write_jobs(CONFIG, REQUEST, str(demo_job), queue=f"local://{demo_job}/queue.db")
    assert backlog(demo_job) == 0


def test_a_worker_killed_mid_predict_changes_nothing(demo_job: Path, tmp_path: Path) -> None:
    job_root = tmp_path / "job"
    queue = f"local://{job_root}/queue.db"
    write_jobs(CONFIG, REQUEST, str(job_root), queue=queue)
    manifest = JobRoot(job_root).read_manifest()
    subs = subscriptions(manifest.steps + manifest.job_steps, manifest.topics)
    # The survivor runs until the job is finished: the killed task comes back when its lease runs out.
    command = worker_command(queue, subs, idle_timeout=300, lease_seconds=4)
    env = {**os.environ, "WANDB_MODE": "disabled"}
    workers = {
        name: subprocess.Popen(command, env={**env, "RSLP_WORKER_NAME": name}, start_new_session=True)
        for name in ("w0", "w1")
    }
    predict_markers = job_root / "markers" / "predict"
    deadline = time.monotonic() + 120
    victim = None
    while victim is None and time.monotonic() < deadline:
        for marker in predict_markers.glob("*.running.json") if predict_markers.exists() else []:
            if not marker.with_name(marker.name.replace(".running.", ".done.")).exists():
                victim = json.loads(marker.read_text())
                break
        time.sleep(0.05)
    assert victim is not None, "no predict task started"
    pid = int(victim["worker"].rsplit("-", 1)[1])
    time.sleep(1.0)  # well into predict: the model is loading or running
    os.killpg(pid, signal.SIGKILL)  # the worker and its task process, as a lost machine
    survivors = [proc for proc in workers.values() if proc.pid != pid]
    stop_when_finished([str(job_root)], survivors, timeout=180)
    for proc in workers.values():
        proc.wait(timeout=60)
    task_id = victim["task"]["task_id"]
    assert (predict_markers / f"{task_id}.done.json").exists()
    assert json.loads((predict_markers / f"{task_id}.done.json").read_text())["worker"] != victim["worker"]
    (output,) = Job.load(str(job_root)).output_paths()
    (reference,) = Job.load(str(demo_job)).output_paths()
    assert output.read_bytes() == reference.read_bytes()


def test_cli_write_jobs_with_a_missing_checkpoint_is_one_line_and_enqueues_nothing(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text(Path(CONFIG).read_text().replace("checkpoint: checkpoint.ckpt", "checkpoint: gone.ckpt"))
    for name in ("dataset.json", "model.yaml"):
        (tmp_path / name).write_text((DEMO_DIR / name).read_text())
    (tmp_path / "data").symlink_to(DEMO_DIR / "data")
    job_root = tmp_path / "job"
    command = [sys.executable, "-m", "rslp.cli", "write-jobs", "--config", str(config), "--request", REQUEST]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    done = subprocess.run([*command, "--job-root", str(job_root)], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2
    assert done.stderr.strip() == f"rslp write-jobs: error: {config}: checkpoint: {tmp_path}/gone.ckpt does not exist"
    assert not job_root.exists()


def test_run_reports_a_request_outside_the_imagery_in_one_line(tmp_path: Path) -> None:
    ensure_scene(DEMO_SCENE, DEMO_DIR / "data")
    request = json.loads(Path(REQUEST).read_text())
    for feature in request["features"]:
        feature["geometry"]["coordinates"] = [
            [[x, y + 0.3] for x, y in ring] for ring in feature["geometry"]["coordinates"]
        ]
    outside = tmp_path / "outside.geojson"
    outside.write_text(json.dumps(request))
    with pytest.raises(PermanentError) as e:
        run(CONFIG, str(outside), str(tmp_path / "job"), workers=2, idle_timeout=2)
    message = str(e.value)
    assert "\n" not in message and "tasks dead-lettered" in message
    assert f"prepare p00000: PermanentError: {outside}: partition p00000: none of its" in message
    assert "is the request outside the imagery?" in message


def test_the_demo_prints_a_screenful_and_names_a_picture_of_its_prediction(demo_job: Path) -> None:
    console = (demo_job / "console.txt").read_text().splitlines()
    assert len(console) <= 40, "\n".join(console)
    assert not [line for line in console if "Warning" in line or line.startswith("{")], "\n".join(console)
    picture = demo_job / "output" / "prediction.png"
    assert console[-1].endswith(f": {picture}")
    height, width, _ = imread(picture).shape  # a real image, two panels wide
    assert width > height > 300
    worker_logs = (demo_job / "logs" / "workers.log").read_text()
    assert '"event": "done"' in worker_logs and "leaked semaphore" not in worker_logs
