"""A job whose every task was dead-lettered by a worker that could write no marker for it.

A worker refuses a job root outside its ``--job_roots`` before it touches the root, so
the only trace of those tasks is in the dead letters. ``rslp status`` must count them
dead, with their reason and the command that replays them, on both queues, and never
call their messages lost.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from rslp.jobroot import JobRoot
from rslp.pipeline.config import subscriptions
from rslp.pipeline.demo import DEMO_DIR, DEMO_SCENE, ensure_scene
from rslp.pipeline.write_jobs import write_jobs
from rslp.status.model import collect
from rslp.status.render import render, replay_command
from tests.conftest import Backend
from tests.shell import run_printed, shell_env

#: A worker start-up plus its idle timeout, on a loaded machine.
CEILING = 180


def demo_with_own_topics(dest: Path) -> Path:
    """The demo pipeline with topics no other test uses (the emulator is shared by the session)."""
    ensure_scene(DEMO_SCENE, DEMO_DIR / "data")
    for name in ("pipeline.yaml", "dataset.json", "model.yaml", "checkpoint.ckpt", "request.geojson"):
        shutil.copy(DEMO_DIR / name, dest / name)
    (dest / "data").symlink_to(DEMO_DIR / "data")
    config = dest / "pipeline.yaml"
    config.write_text(config.read_text().replace("demo-", f"dl{uuid.uuid4().hex[:6]}-"))
    return config


@pytest.fixture(autouse=True)
def _no_job_roots_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RSLP_JOB_ROOTS", raising=False)


def test_status_counts_tasks_dead_lettered_without_a_marker_as_dead_with_reason_and_replay(
    backend: Backend, tmp_path: Path
) -> None:
    config = demo_with_own_topics(tmp_path)
    job_root = str(tmp_path / "job")
    write_jobs(str(config), str(tmp_path / "request.geojson"), job_root, queue=backend.url)
    manifest = JobRoot(job_root).read_manifest()
    subs = ",".join(subscriptions(manifest.steps + manifest.job_steps, manifest.topics))
    elsewhere = ["--job_roots", str(tmp_path / "elsewhere"), "--idle_timeout", "3"]
    worker = subprocess.run(
        [sys.executable, "-m", "rslp.cli", "worker", "--queue", backend.url, "--subscription", subs, *elsewhere],
        capture_output=True,
        text=True,
        timeout=CEILING,
        env=shell_env(),
    )
    assert worker.returncode == 0, worker.stderr[-3000:]
    assert not (Path(job_root) / "markers").exists() or not any((Path(job_root) / "markers").rglob("*.dead.json"))

    job = collect(job_root)
    first = job.steps[0]
    assert (first.step, first.counts["dead"], first.counts["queued"]) == ("create_windows", 4, 0)
    assert all(s.counts["blocked"] == 4 for s in job.steps[1 : len(manifest.steps)])
    text = render(job)
    assert "lost" not in text
    assert "not under this worker's job roots" in text  # the reason, from the dead letters
    assert replay_command(manifest) in text
    assert "nothing left to run: " in text

    # dlq list shows the reason whole, up to the fix it names (it once cut it at 100 characters).
    listed = run_printed(f"rslp dlq list --job_root {job_root} --queue {backend.url}", shell_env(), CEILING)
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert f"is not under this worker's job roots ({tmp_path / 'elsewhere'})" in listed.stdout

    # The way out, run as printed: the tasks are queued again, none dead.
    replayed = run_printed(replay_command(manifest), shell_env(), CEILING)
    assert replayed.returncode == 0, replayed.stderr[-3000:]
    after = collect(job_root).steps[0]
    assert (after.counts["dead"], after.counts["queued"]) == (0, 4)
