"""What the end-to-end tests share: the demo job as a user first runs it (once per test run), and a smaller request."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from filelock import FileLock

from tests.shell import run_printed, shell_env

#: A whole demo job on a loaded 2-core machine, with room to spare.
JOB_CEILING = 600
#: What ``make demo`` runs, in a shell where the venv is not activated.
DEMO_COMMAND = ".venv/bin/rslp demo --job_root {job_root}"
#: A corner of the demo area that makes one partition (8 tasks instead of the demo's 26): enough for
#: the tests that check that commands or benchmarks finish a job, not what the job computes.
ONE_PARTITION = [[-122.420, 37.731], [-122.410, 37.731], [-122.410, 37.739], [-122.420, 37.739], [-122.420, 37.731]]


@pytest.fixture
def one_partition_request(tmp_path: Path) -> Path:
    """A request GeoJSON for :data:`ONE_PARTITION`."""
    feature = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ONE_PARTITION]}}
    path = tmp_path / "small.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    return path


@pytest.fixture(scope="session")
def demo_job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``rslp demo`` (2 workers) run as printed into a fresh job root; its console in ``console.txt``, ``stdout.txt``.

    Three modules read this job (its output, markers, console and hints) and none changes it,
    so it runs once per test run, not once per module: each run of it costs two workers'
    torch imports and the whole demo (20-40 CPU seconds on a 2-core machine). pytest-xdist's
    processes share it through the run's temporary folder, the first to need it building it
    under a file lock while the others wait; a failure is recorded and fails each of them.
    """
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # one folder per test run
    job_root = shared / "demo-shared" / "job"
    failed = shared / "demo-shared" / "failed.txt"
    with FileLock(str(shared / "demo-shared.lock")):
        if failed.exists():
            pytest.fail(f"the shared demo run failed (in another test process): {failed.read_text()}")
        if not (job_root / "stdout.txt").exists():
            started = time.monotonic()
            try:
                done = run_printed(DEMO_COMMAND.format(job_root=job_root), shell_env(activated=False), JOB_CEILING)
                problem = f"exit {done.returncode}: {done.stderr[-3000:]}" if done.returncode != 0 else None
            except subprocess.TimeoutExpired:
                problem = f"not finished within {JOB_CEILING} s"
            if problem is not None:
                failed.parent.mkdir(parents=True, exist_ok=True)
                failed.write_text(problem)
                pytest.fail(problem)
            (job_root / "console.txt").write_text(done.stdout + done.stderr)
            (job_root / "stdout.txt").write_text(done.stdout)
            print(f"demo wall time {time.monotonic() - started:.1f} s")
    return job_root
