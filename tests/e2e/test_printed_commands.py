"""Every command the CLI prints for a user to run next runs as printed, and the job finishes.

A user who follows the hints pastes them into a shell: these tests do the same, with
``rslp`` on PATH as an activated venv has it (and, for the demo, without), and run each
printed line verbatim through ``shlex.split``.
"""

from __future__ import annotations

import shlex
import subprocess
import uuid

import pytest
from upath import UPath

from rslp.pipeline.demo import DEMO_DIR, DEMO_SCENE, ensure_scene
from rslp.pipeline.job import Job
from tests.shell import REPO, hints, run_printed, shell_env

pytestmark = pytest.mark.slow

CONFIG, REQUEST = str(DEMO_DIR / "pipeline.yaml"), str(DEMO_DIR / "request.geojson")
#: A whole demo job on a loaded 2-core machine, with room to spare.
JOB_CEILING = 600


def watch_and_work(found: dict[str, str], env: dict[str, str]) -> str:
    """Start the printed watch, run the printed worker; the watch must end by itself (the job finished)."""
    watch = subprocess.Popen(
        shlex.split(found["watch it"]), env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        worker = run_printed(found["run workers"], env, JOB_CEILING)
        assert worker.returncode == 0, worker.stderr[-3000:]
        out, _ = watch.communicate(timeout=120)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
    assert watch.returncode == 0, out[-3000:]
    return out


@pytest.fixture(scope="module", autouse=True)
def demo_imagery() -> None:
    ensure_scene(DEMO_SCENE, DEMO_DIR / "data")


def test_write_jobs_on_a_gs_job_root_prints_commands_that_finish_the_job(gcs_bucket: str) -> None:
    job_root = f"{gcs_bucket}/jobs/hints-{uuid.uuid4().hex[:8]}"
    env = shell_env()
    written = run_printed(f"rslp write-jobs --config {CONFIG} --request {REQUEST} --job-root {job_root}", env, 120)
    assert written.returncode == 0, written.stderr[-3000:]
    found = hints(written.stdout)
    assert set(found) == {"watch it", "run workers"}, written.stdout
    assert f"--job_roots {gcs_bucket}/jobs" in found["run workers"]  # what the worker needs for this root
    out = watch_and_work(found, env)
    assert "finished: every task is done" in out
    assert all(UPath(p).exists() for p in Job.load(job_root).output_paths())
