"""Every command the CLI prints for a user to run next runs as printed, and the job finishes.

A user who follows the hints pastes them into a shell: these tests do the same, with
``rslp`` on PATH as an activated venv has it (and, for the demo, without), and run each
printed line verbatim through ``shlex.split``.
"""

from __future__ import annotations

import shlex
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from upath import UPath

from rslp.pipeline.demo import DEMO_DIR, DEMO_SCENE, ensure_scene
from rslp.pipeline.job import Job
from tests.e2e.conftest import JOB_CEILING
from tests.shell import REPO, hints, run_printed, shell_env

pytestmark = pytest.mark.slow

CONFIG = str(DEMO_DIR / "pipeline.yaml")


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


@pytest.fixture(autouse=True)
def demo_imagery() -> None:
    ensure_scene(DEMO_SCENE, DEMO_DIR / "data")


def test_write_jobs_on_a_gs_job_root_prints_commands_that_finish_the_job(
    gcs_bucket: str, one_partition_request: Path
) -> None:
    job_root = f"{gcs_bucket}/jobs/hints-{uuid.uuid4().hex[:8]}"
    env = shell_env()
    written = run_printed(
        f"rslp write-jobs --config {CONFIG} --request {one_partition_request} --job-root {job_root}", env, 120
    )
    assert written.returncode == 0, written.stderr[-3000:]
    assert ": 1 partitions, 1 tasks published" in written.stdout, written.stdout
    found = hints(written.stdout)
    assert set(found) == {"watch it", "run workers"}, written.stdout
    assert f"--job_roots {gcs_bucket}/jobs" in found["run workers"]  # what the worker needs for this root
    assert "metadata server" not in written.stderr  # google.auth's probe: noise on every gs:// command
    out = watch_and_work(found, env)
    assert "metadata server" not in out
    assert "finished: every task is done" in out
    assert all(UPath(p).exists() for p in Job.load(job_root).output_paths())


def readme_block(after: str) -> list[str]:
    """The indented ``rslp`` lines of the README's first code block after the heading ``after``."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(after) :]
    lines = [line.strip() for line in section.splitlines() if line.startswith("    rslp ")]
    return [line.split("  #")[0].strip() for line in lines[:4]]


def test_the_readmes_local_fleet_example_runs_as_written(tmp_path: Path) -> None:
    env = {**shell_env(), "RSLP_FLEET_DIR": str(tmp_path / "fleets")}
    queue = tmp_path / "q.db"  # the README's /tmp/q.db, private to this test
    commands = [c.replace("/tmp/q.db", str(queue)) for c in readme_block("### A local backend")]
    assert [" ".join(c.split()[:2]) for c in commands] == ["rslp setup", "rslp launch", "rslp fleet", "rslp fleet"]
    for command in commands:
        done = run_printed(command, env, 120)
        assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"
        if command.startswith("rslp launch"):
            assert hints(done.stdout) == {"watch them": "rslp fleet status dev"}
        if command.startswith("rslp fleet status"):
            assert "failed" not in done.stdout and "2 workers" in done.stdout, done.stdout


def test_launch_backend_locals_hint_runs_as_printed_and_its_workers_finish_the_job(
    tmp_path: Path, one_partition_request: Path
) -> None:
    env = {**shell_env(), "RSLP_FLEET_DIR": str(tmp_path / "fleets")}
    job_root, queue = tmp_path / "job", f"local://{tmp_path / 'q.db'}"
    written = run_printed(
        f"rslp write-jobs --config {CONFIG} --request {one_partition_request} --job-root {job_root} --queue {queue}",
        env,
        120,
    )
    assert written.returncode == 0, written.stderr[-3000:]
    assert ": 1 partitions, 1 tasks published" in written.stdout, written.stdout
    subs = shlex.split(hints(written.stdout)["run workers"])[-1]
    launched = run_printed(
        f"rslp launch --backend local --fleet job --queue {queue} --subscription {subs} --num_workers 2"
        " --idle_timeout 10",
        env,
        120,
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    watch = hints(launched.stdout)["watch them"]
    deadline = time.monotonic() + JOB_CEILING
    while True:
        shown = run_printed(watch, env, 120)
        assert shown.returncode == 0, shown.stderr[-3000:]
        if "2 workers: 2 succeeded" in shown.stdout:
            break
        assert "failed" not in shown.stdout and time.monotonic() < deadline, shown.stdout
        time.sleep(2)
    assert all(p.exists() for p in Job.load(str(job_root)).output_paths())


def test_the_demos_hints_run_as_printed_before_the_venv_is_activated(demo_job: Path) -> None:
    """`make demo` leaves the venv unactivated: its status hint names the venv's rslp, and it has no worker hint.

    ``demo_job`` is ``.venv/bin/rslp demo`` run as printed, in a shell without the venv on PATH.
    """
    env = shell_env(activated=False)
    stdout = (demo_job / "stdout.txt").read_text()
    found = hints(stdout)
    assert set(found) == {"watch it"}, stdout
    assert found["watch it"].split()[0].endswith(".venv/bin/rslp")  # relative to the current folder when under it
    shown = run_printed(found["watch it"], env, 120)
    assert shown.returncode == 0 and "finished: every task is done" in shown.stdout, shown.stderr[-3000:]
