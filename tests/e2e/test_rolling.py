"""Rolling runs end to end: two monthly periods of the demo, real worker processes, catalog and history.

``rslp rolling`` enqueues January and February 2026 on one queue; local workers (the
worker CLI) run both jobs; each period's output comes from its own month's imagery; the
catalog records both periods with their drift from the reference and from each other;
a second ``rslp rolling`` publishes nothing; ``rslp status`` shows a period and the root.
Once on the embedded queue and once on the Pub/Sub emulator.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rslp.pipeline.demo import DEMO_DIR, DEMO_SCENE, ensure_scene, score
from rslp.pipeline.job import Job
from rslp.pipeline.run import worker_command
from tests.conftest import stop_when_finished

pytestmark = pytest.mark.slow

ACCURACY_THRESHOLD = 0.95
SUBSCRIPTIONS = ["demo-combine", "demo-gpu", "demo-cpu"]
ENV = {**os.environ, "WANDB_MODE": "disabled"}


def rslp(*args: str) -> subprocess.CompletedProcess[str]:
    """The rslp CLI in a child process, as cron or CI would call it."""
    return subprocess.run(
        [sys.executable, "-m", "rslp.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **ENV},
    )


def roll(root: Path, queue: str, until: str) -> subprocess.CompletedProcess[str]:
    config, request = str(DEMO_DIR / "pipeline.yaml"), str(DEMO_DIR / "request.geojson")
    args = ["--config", config, "--request", request, "--root", str(root), "--every", "month"]
    return rslp("rolling", *args, "--since", "2026-01", "--until", until, "--queue", queue)


def run_workers(queue: str, lease_seconds: float, job_roots: list[Path], count: int = 2) -> None:
    """Worker processes until every period's job is finished (then stopped, as a fleet stop does)."""
    command = worker_command(queue, SUBSCRIPTIONS, idle_timeout=300, lease_seconds=lease_seconds)
    procs = [subprocess.Popen(command, env={**os.environ, **ENV}) for _ in range(count)]
    stop_when_finished([str(root) for root in job_roots], procs, timeout=600)


@pytest.mark.timeout(900)  # two whole jobs with real workers: about 2 min here, more on a loaded machine
def test_two_monthly_periods_on_the_embedded_queue(tmp_path: Path) -> None:
    ensure_scene(DEMO_SCENE, DEMO_DIR / "data")
    root, queue = tmp_path / "root", f"local://{tmp_path / 'queue.db'}"
    first = roll(root, queue, until="2026-03-01")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "2 periods (2 new," in first.stdout and "8 tasks published" in first.stdout
    run_workers(queue, lease_seconds=30, job_roots=[root / "2026-01", root / "2026-02"])

    catalog = json.loads((root / "catalog.json").read_text())
    jan, feb = catalog["periods"]
    assert (jan["id"], jan["status"], feb["id"], feb["status"]) == ("2026-01", "done", "2026-02", "done")
    assert jan["drift_reference"] < 0.1 and jan["warning"] is None and jan["drift_previous"] is None
    assert feb["previous"] == "2026-01" and feb["drift_previous"] > 0.1 and "exceeds the threshold" in feb["warning"]
    for period, date in ((jan, "2026-01-15"), (feb, "2026-02-15")):
        assert score(period["outputs"]["prediction"], DEMO_DIR / "data" / "labels" / date) > ACCURACY_THRESHOLD
    (jan_output,) = Job.load(str(root / "2026-01")).output_paths()
    jan_bytes = jan_output.read_bytes()

    again = roll(root, queue, until="2026-03-01")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "(0 new, 0 resumed, 0 moving, 2 done, 0 without imagery); 0 tasks published" in again.stdout
    assert jan_output.read_bytes() == jan_bytes  # history is never rewritten

    period = rslp("status", "--job_root", str(root / "2026-01"))
    assert period.returncode == 0 and "job " in period.stdout
    history = rslp("status", "--root", str(root), "--plot", str(tmp_path / "history.png"))
    assert history.returncode == 0, history.stderr[-2000:]
    rows = [line for line in history.stdout.splitlines() if line.startswith("2026-")]
    assert len(rows) == 2 and all(" 26/26 " in row and " done " in row for row in rows)
    assert "exceeds the threshold" in rows[1]
    assert (tmp_path / "history.png").stat().st_size > 5000


@pytest.mark.emulator
@pytest.mark.timeout(900)
def test_a_monthly_period_on_the_pubsub_emulator(emulator_host: str, tmp_path: Path) -> None:
    ensure_scene(DEMO_SCENE, DEMO_DIR / "data")
    root, queue = tmp_path / "root", "pubsub://rslp-rolling"
    first = roll(root, queue, until="2026-02-01")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "1 periods (1 new," in first.stdout and "4 tasks published on pubsub://rslp-rolling" in first.stdout
    again = roll(root, queue, until="2026-02-01")  # in flight: nothing published twice
    assert again.returncode == 0 and "1 moving" in again.stdout and "; 0 tasks published" in again.stdout
    run_workers(queue, lease_seconds=10, job_roots=[root / "2026-01"], count=1)  # one period: one worker
    (period,) = json.loads((root / "catalog.json").read_text())["periods"]
    assert period["status"] == "done"
    assert score(period["outputs"]["prediction"]) > ACCURACY_THRESHOLD
    last = roll(root, queue, until="2026-02-01")
    assert last.returncode == 0 and "1 done" in last.stdout and "; 0 tasks published" in last.stdout
