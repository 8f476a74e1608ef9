"""`rslp fleet autoscale` on the local backend runs the demo job to the end and leaves no worker behind."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rslp.launch import commands
from rslp.launch.local import FLEET_DIR_ENV, LocalFleetClient
from rslp.launch.pool import PoolSettings
from rslp.pipeline.demo import DEMO_DIR, DEMO_SCENE, ensure_scene
from rslp.pipeline.job import Job
from rslp.pipeline.write_jobs import write_jobs

pytestmark = pytest.mark.slow


def test_autoscaler_scales_up_for_the_demo_backlog_and_ends_at_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(FLEET_DIR_ENV, str(tmp_path / "fleets"))
    ensure_scene(DEMO_SCENE, DEMO_DIR / "data")
    job_root = tmp_path / "job"
    queue = f"local://{tmp_path / 'queue.db'}"
    write_jobs(str(DEMO_DIR / "pipeline.yaml"), str(DEMO_DIR / "request.geojson"), str(job_root), queue=queue)
    capsys.readouterr()

    checks = commands.autoscale(
        "auto",
        job_root=str(job_root),
        deadline="10m",
        max_workers=1,
        interval=2,
        max_checks=150,
        pool=PoolSettings(queue=queue, backend="local", idle_timeout=60),
    )
    out = capsys.readouterr().out
    assert "job done: every pool of fleet auto is stopped" in out, out[-2000:]
    assert checks < 150
    for topic in ("demo-cpu", "demo-gpu", "demo-combine"):
        assert f"{topic}: 0 workers, target 1: up +1" in out  # each pool was started when its work was ready
    (output,) = Job.load(str(job_root)).output_paths()
    assert output.exists()

    client = LocalFleetClient()
    deadline = time.monotonic() + 60
    while client.list_workloads(None, "auto", active_only=True) and time.monotonic() < deadline:
        time.sleep(0.5)
    workers = client.list_workloads(None, "auto", active_only=False)
    assert len(workers) >= 3 and all(w.status == "succeeded" for w in workers), workers  # exit 0: handled stop
