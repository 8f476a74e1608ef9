"""The demo job in the production topology on one machine: job root on gs://, queue on Pub/Sub.

Manifest, markers, rslearn datasets, partition files and the merged output all live in
a bucket of the GCS emulator; tasks go through the Pub/Sub emulator to two real worker
processes (the worker CLI). The merged output must equal a local-disk run's, and
``rslp status`` (with ``--map``) must work on the gs:// job. ``rslp run`` on a gs:// job
root keeps its embedded queue (SQLite) on local disk.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from upath import UPath

from rslp.jobroot import JobRoot
from rslp.pipeline.config import subscriptions
from rslp.pipeline.demo import DEMO_DIR, DEMO_SCENE, ensure_scene
from rslp.pipeline.job import Job
from rslp.pipeline.run import run, worker_command
from rslp.pipeline.write_jobs import write_jobs
from rslp.queue.placement import default_queue_url
from tests.conftest import PROJECT, stop_when_finished
from tests.e2e.test_demo_pipeline import CONFIG, REQUEST

pytestmark = [pytest.mark.slow, pytest.mark.emulator]


@pytest.fixture(scope="module")
def gs_job(gcs_bucket: str, emulator_host: str) -> str:
    """The demo job run by two Pub/Sub workers into a fresh job root on the GCS emulator."""
    ensure_scene(DEMO_SCENE, DEMO_DIR / "data")
    job_root = f"{gcs_bucket}/jobs/demo-{uuid.uuid4().hex[:8]}"
    queue = f"pubsub://{PROJECT}"
    write_jobs(CONFIG, REQUEST, job_root, queue=queue)
    manifest = JobRoot(job_root).read_manifest()
    subs = subscriptions(manifest.steps + manifest.job_steps, manifest.topics)
    # Stopped once the job is finished (combine and observe included), not by their idle timeout.
    command = worker_command(queue, subs, idle_timeout=300, lease_seconds=15, job_root=job_root)  # --job_roots
    env = {**os.environ, "WANDB_MODE": "disabled"}
    workers = [
        subprocess.Popen(command, env={**env, "RSLP_WORKER_NAME": f"gs{i}"}, start_new_session=True) for i in range(2)
    ]
    try:
        stop_when_finished([job_root], workers, timeout=420)
    finally:
        for proc in workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return job_root


def test_demo_on_gcs_and_pubsub_merges_the_same_output_as_on_local_disk(
    gs_job: str,
    demo_job: Path,  # the local reference run (tests/e2e/conftest.py)
) -> None:
    root = UPath(gs_job)
    assert root.protocol == "gs"
    assert (root / "manifest.json").exists()
    assert any((root / "partitions").iterdir()), "the rslearn datasets live on gs:// too"
    done = [p.name for p in (root / "markers" / "predict").iterdir() if p.name.endswith(".done.json")]
    assert len(done) == JobRoot(gs_job).read_manifest().partition_count
    (output,) = Job.load(gs_job).output_paths()
    (reference,) = Job.load(str(demo_job)).output_paths()
    assert str(output).startswith("gs://")
    assert output.read_bytes() == reference.read_bytes()
    observed = json.loads((root / "output" / "observe.json").read_text())
    assert observed["pixels"] > 0 and observed["output"] == str(output)


def test_status_and_its_map_work_on_a_gs_job(gs_job: str, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "rslp.cli", "status", "--job_root", gs_job, "--map", str(tmp_path / "map.png")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=os.environ.copy())
    assert done.returncode == 0, done.stderr[-3000:]
    assert JobRoot(gs_job).read_manifest().job_id in done.stdout
    assert "predictions: drift" in done.stdout
    assert (tmp_path / "map.png").read_bytes().startswith(b"\x89PNG")


def test_rslp_run_on_a_gs_job_root_keeps_its_embedded_queue_on_local_disk(
    gcs_bucket: str,
    demo_job: Path,  # the local reference run (tests/e2e/conftest.py)
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RSLP_QUEUE_DIR", str(tmp_path / "queues"))  # where default embedded queues go
    job_root = f"{gcs_bucket}/jobs/run-{uuid.uuid4().hex[:8]}"
    (output,) = run(CONFIG, REQUEST, job_root, workers=2, idle_timeout=3)
    printed = capsys.readouterr().out
    manifest = JobRoot(job_root).read_manifest()
    for step in manifest.steps + manifest.job_steps:  # each step's progress line (it once showed 2 of 8 on gs://)
        assert re.search(rf"^  {step} +\d+/\d+ done", printed, flags=re.MULTILINE), printed
    assert "run workers:" not in printed  # rslp run starts its own
    (reference,) = Job.load(str(demo_job)).output_paths()
    assert UPath(output).read_bytes() == reference.read_bytes()
    queue = default_queue_url(job_root).removeprefix("local://")
    assert queue.startswith(str(tmp_path / "queues")) and Path(queue).is_file()
    assert not (UPath(job_root) / "queue.db").exists()
