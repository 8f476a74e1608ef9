"""rslp dashboard's JSON view: what the page shows, from the same reads as rslp status."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import numpy as np
import pytest
import rasterio
from matplotlib.image import imread
from rasterio.transform import from_origin
from upath import UPath

from rslp.dashboard.model import PARTITION_CODES, job_view, layout, public_url, root_view, throughput
from rslp.dashboard.snapshot import Snapshots
from rslp.dashboard.thumbnail import thumbnail_png
from rslp.jobroot import JobRoot
from rslp.pipeline.job import make_task
from rslp.pipeline.rolling import rolling
from rslp.status.model import TASK_STATES, collect
from tests.unit.test_status_report import EXPECTED, NOW, SCENARIO, make_job, mark, square


@pytest.fixture
def job(tmp_path: Path) -> Path:
    """The status tests' scenario: done, running, failed, dead and missing tasks over 10 partitions."""
    root = tmp_path / "job"
    make_job(root, len(SCENARIO))
    for pid, per_step in SCENARIO.items():
        for step, states in zip(["create_windows", "predict", "postprocess"], per_step, strict=False):
            mark(root, step, pid, *states, error=f"RuntimeError: {pid} broke at {step}")
    return root


def view_of(root: Path, **kwargs: object) -> dict[str, object]:
    return job_view(collect(str(root)), **{"running_since": {}, "outputs": [], "thumbnail": False,
                                           "refresh_seconds": 0.1, **kwargs})  # fmt: skip


def test_view_has_each_steps_counts_and_one_state_character_per_partition(job: Path) -> None:
    view = view_of(job)
    counts = {s["step"]: tuple(s["counts"][k] for k in TASK_STATES if k != "stalled") for s in view["steps"]}
    assert counts == EXPECTED
    # p00000 done, p00002 running, p00003 failed, p00004 dead, p00006 not started
    states = view["partitions"]["states"]
    assert (states[0], states[2], states[3], states[4], states[6]) == ("d", "r", "f", "x", "q")
    assert len(states) == view["partitions"]["count"] == len(SCENARIO)
    assert {item["code"] for item in view["partitions"]["legend"]} == set(PARTITION_CODES.values())
    json.dumps(view, allow_nan=False)  # what the server sends


def test_layout_gives_each_partition_its_four_corners_in_plan_order(tmp_path: Path) -> None:
    manifest = make_job(tmp_path / "job", 7)
    corners = np.frombuffer(layout(manifest), dtype=np.float32).reshape(7, 4, 2)
    for i in range(7):
        ring = square(i, per_row=3)["coordinates"][0]  # type: ignore[index]
        assert corners[i] == pytest.approx(np.array(ring[:4], dtype=np.float32))


def test_dead_tasks_are_listed_with_their_reasons_and_the_commands_that_replay_them(job: Path) -> None:
    view = view_of(job)
    assert view["dead_total"] == 4
    dead = {(d["step"], d["partition"]): d["reason"] for d in view["dead"]}
    assert dead[("create_windows", "p00004")] == "RuntimeError: p00004 broke at create_windows"
    assert dead[("postprocess", "p00005")] == "RuntimeError: p00005 broke at postprocess"
    assert view["commands"]["replay"] == f"rslp dlq replay --job_root {job} --all"
    assert view["failures_total"] == 5 and sum(g["count"] for g in view["failures"]) == 5


def test_throughput_counts_done_markers_by_when_they_were_written(tmp_path: Path) -> None:
    root = tmp_path / "job"
    make_job(root, 30)
    start = NOW - 3600
    for i in range(30):  # 10 in the first minute, 20 in the last ten minutes
        mark(root, "create_windows", f"p{i:05d}", "running", "done", at=start + 30 if i < 10 else NOW - 300)
    (step, *_) = collect(str(root), now=NOW).steps
    series = throughput(step, start, NOW)
    width = series[1][0] - series[0][0]
    assert sum(rate for _, rate in series) * width / 60 == pytest.approx(30)
    assert series[0][1] * width / 60 == pytest.approx(10) and series[0][0] == start


def test_worker_rows_say_which_task_each_worker_runs_and_since_when(job: Path) -> None:
    task_id = make_task("job-test", str(job), "predict", "p00002").task_id
    view = view_of(job, running_since={task_id: NOW - 50})
    (row,) = view["workers"]
    assert (row["worker"], row["step"], row["partition"], row["since"], row["stalled"]) == (
        "w-1",
        "predict",
        "p00002",
        NOW - 50,
        False,
    )


def test_credentials_in_a_url_are_never_shown() -> None:
    assert public_url("s3://key:hunter22@bucket/jobs/a") == "s3://bucket/jobs/a"
    assert public_url("gs://bucket/jobs/a") == "gs://bucket/jobs/a"


def test_a_refresh_that_fails_keeps_the_last_view_and_says_why(job: Path) -> None:
    snapshots = Snapshots(job_root=str(job))
    snapshots.refresh()
    (job / "manifest.json").rename(job / "moved.json")
    snapshots.refresh()
    assert snapshots.view is not None
    view = json.loads(snapshots.view.body)
    assert view["kind"] == "job" and view["job_id"] == "job-test"
    assert "manifest.json" in view["error"]


def test_thumbnail_colours_each_class_and_leaves_nodata_clear(tmp_path: Path) -> None:
    path = tmp_path / "prediction.tif"
    data = np.zeros((1000, 600), dtype=np.uint8)
    data[:, 300:] = 1
    data[:100] = 255
    profile = {"driver": "GTiff", "width": 600, "height": 1000, "count": 1, "dtype": "uint8", "nodata": 255,
               "crs": "EPSG:32610", "transform": from_origin(550000, 4180000, 10, 10)}  # fmt: skip
    with rasterio.open(path, "w", **profile) as f:
        f.write(data, 1)
    rgba = imread(io.BytesIO(thumbnail_png(str(path), size=100)), format="png")
    assert rgba.shape == (100, 60, 4)
    assert rgba[5, 10, 3] == 0 and rgba[50, 10, 3] == 1  # nodata rows are clear
    assert tuple(rgba[50, 10, :3]) != tuple(rgba[50, 50, :3])  # two classes, two colours


def test_root_view_has_one_row_per_period_with_its_progress(demo_copy: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    config, request = str(demo_copy / "pipeline.yaml"), str(demo_copy / "request.geojson")
    rolling(config, request, str(root), "month", "2026-01", "2026-03")
    ledger = JobRoot(root / "2026-01")
    manifest = ledger.read_manifest()
    ledger.mark(make_task(manifest.job_id, manifest.job_root, "create_windows", "p00001"), "dead", error="boom")
    view = root_view(str(root))
    rows = [(p["id"], p["done"], p["total"], p["status"]) for p in view["periods"]]
    assert rows == [("2026-01", 0, 26, "failed"), ("2026-02", 0, 26, "running")]


def test_a_job_root_on_object_storage_gives_the_same_view(gcs_bucket: str, tmp_path: Path) -> None:
    root = UPath(f"{gcs_bucket}/jobs/{uuid.uuid4().hex[:8]}")
    make_job(root, 4, queue=f"local://{tmp_path}/queue.db")  # type: ignore[arg-type]
    mark(root, "create_windows", "p00000", "running", "done")  # type: ignore[arg-type]
    mark(root, "create_windows", "p00001", "running", "dead", error="RuntimeError: broke")  # type: ignore[arg-type]
    snapshots = Snapshots(job_root=str(root))
    snapshots.refresh()
    assert snapshots.view is not None and snapshots.layout is not None
    view = json.loads(snapshots.view.body)
    assert "error" not in view and view["partitions"]["states"] == "rxqq"  # p00000 has steps to go
    assert [(d["partition"], d["reason"]) for d in view["dead"]] == [("p00001", "RuntimeError: broke")]
    assert len(snapshots.layout.body) == 4 * 8 * 4
