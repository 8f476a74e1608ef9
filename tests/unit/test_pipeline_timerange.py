"""Time ranges: precedence (flags > feature > config), errors in one line, windows and identity."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import shapely
import shapely.geometry

from rslp.jobroot import JobRoot
from rslp.pipeline.dated_files import acquisition_day
from rslp.pipeline.job import Job
from rslp.pipeline.rslearn_ops import open_dataset
from rslp.pipeline.timerange import TimeRange, TimeRangeError, from_flags, parse_time
from rslp.pipeline.write_jobs import pending_tasks, write_jobs
from rslp.registry import get

JAN = TimeRange(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))
FEB = TimeRange(datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))


def box(west: float, south: float, east: float, north: float) -> dict[str, Any]:
    return shapely.geometry.mapping(shapely.box(west, south, east, north))  # type: ignore[no-any-return]


def two_feature_request(demo: Path, own: dict[str, str] | None) -> Path:
    """The demo request split in two features (west and east halves); the second may have its own period."""
    request = json.loads((demo / "request.geojson").read_text())
    feature = request["features"][0]
    west = {**feature, "geometry": box(-122.42, 37.73, -122.40, 37.76)}
    east = {**feature, "geometry": box(-122.39, 37.735, -122.38, 37.76)}
    east["properties"] = {**feature["properties"], **(own or {})}
    request["features"] = [west, east]
    path = demo / "two.geojson"
    path.write_text(json.dumps(request))
    return path


def partition_ranges(job_root: Path) -> set[tuple[datetime, datetime] | None]:
    ledger = JobRoot(job_root)
    return {p.time_range for p in ledger.partitions(ledger.read_manifest())}


def test_iso_times_parse_as_utc_and_dates_as_midnight() -> None:
    assert parse_time("2026-01-01", "--start") == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_time("2026-01-01T06:00:00Z", "--start") == datetime(2026, 1, 1, 6, tzinfo=UTC)
    assert parse_time("2026-01-01T06:00:00", "--start") == datetime(2026, 1, 1, 6, tzinfo=UTC)
    assert from_flags("2026-01-01", "2026-02-01") == from_flags("2026-01", "2026-02") == JAN


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("January", "2026-02-01", "--start: 'January' is not an ISO 8601 time"),
        ("2026-02-01", "2026-01-01", "--end: 2026-01-01 is not after --start 2026-02-01 (end before start)"),
        ("2026-01-01", None, "--start: given without --end; give both or neither"),
    ],
)
def test_a_bad_flag_is_one_line_naming_it(start: str, end: str | None, message: str) -> None:
    with pytest.raises(TimeRangeError) as e:
        from_flags(start, end)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_flags_beat_the_feature_which_beats_the_config(demo_copy: Path, tmp_path: Path) -> None:
    request = two_feature_request(demo_copy, {"start_time": "2026-02-01", "end_time": "2026-03-01"})
    config = str(demo_copy / "pipeline.yaml")  # its time_range is January
    write_jobs(config, str(request), str(tmp_path / "by_feature"))
    assert partition_ranges(tmp_path / "by_feature") == {JAN.as_tuple(), FEB.as_tuple()}
    assert JobRoot(tmp_path / "by_feature").read_manifest().time_range is None
    write_jobs(config, str(request), str(tmp_path / "by_flags"), start="2026-02-01", end="2026-03-01")
    assert partition_ranges(tmp_path / "by_flags") == {FEB.as_tuple()}
    assert JobRoot(tmp_path / "by_flags").read_manifest().time_range == FEB.as_tuple()


def test_a_feature_with_end_before_start_fails_naming_it_and_writes_nothing(demo_copy: Path, tmp_path: Path) -> None:
    request = two_feature_request(demo_copy, {"start_time": "2026-03-01", "end_time": "2026-02-01"})
    with pytest.raises(TimeRangeError) as e:
        write_jobs(str(demo_copy / "pipeline.yaml"), str(request), str(tmp_path / "job"))
    assert str(e.value) == (
        f"{request}: features.1.properties.end_time: 2026-02-01 is not after start_time 2026-03-01 (end before start)"
    )
    assert not (tmp_path / "job").exists()


def test_a_range_without_imagery_fails_at_write_jobs_in_one_line_and_publishes_nothing(
    demo_copy: Path, tmp_path: Path
) -> None:
    job_root = tmp_path / "job"
    command = [sys.executable, "-m", "rslp.cli", "write-jobs", "--config", str(demo_copy / "pipeline.yaml")]
    command += ["--request", str(demo_copy / "request.geojson"), "--job-root", str(job_root)]
    done = subprocess.run([*command, "--start", "2025-06-01", "--end", "2025-07-01"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.startswith("rslp write-jobs: error: --start/--end: no item of layers.image in ")
    assert "falls in 2025-06-01T00:00:00+00:00/2025-07-01T00:00:00+00:00 (8 items, from 2026-01-15" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not job_root.exists()


def test_every_window_gets_its_partition_time_range(demo_copy: Path, tmp_path: Path) -> None:
    job_root = str(tmp_path / "job")
    write_jobs(str(demo_copy / "pipeline.yaml"), str(demo_copy / "request.geojson"), job_root)
    get("pipeline", "create_windows").run(["--job_root", job_root, "--partition", "p00000"])
    windows = open_dataset(Job.load(job_root).dataset_root("p00000")).load_windows()
    assert windows and {w.time_range for w in windows} == {JAN.as_tuple()}


def test_rslearn_query_settings_of_the_dataset_config_are_honoured(demo_copy: Path, tmp_path: Path) -> None:
    """A January-to-February window takes one acquisition by default, both with max_matches 2."""
    dataset = json.loads((demo_copy / "dataset.json").read_text())
    dataset["layers"]["image"]["data_source"]["query_config"] = {"max_matches": 2, "space_mode": "MOSAIC"}
    (demo_copy / "dataset.json").write_text(json.dumps(dataset))
    job_root = str(tmp_path / "job")
    config, request = str(demo_copy / "pipeline.yaml"), str(demo_copy / "request.geojson")
    write_jobs(config, request, job_root, start="2026-01-01", end="2026-03-01")
    for step in ("create_windows", "prepare"):
        get("pipeline", step).run(["--job_root", job_root, "--partition", "p00000"])
    window = open_dataset(Job.load(job_root).dataset_root("p00000")).load_windows()[0]
    groups = window.load_layer_datas()["image"].serialized_item_groups
    names = [[item["name"] for item in group] for group in groups]
    assert names == [["tile_r0_c0_2026-01-15"], ["tile_r0_c0_2026-02-15"]]


def test_the_time_range_is_part_of_the_job_identity(demo_copy: Path, tmp_path: Path) -> None:
    config, request = str(demo_copy / "pipeline.yaml"), str(demo_copy / "request.geojson")
    write_jobs(config, request, str(tmp_path / "jan"), start="2026-01-01", end="2026-02-01")
    write_jobs(config, request, str(tmp_path / "feb"), start="2026-02-01", end="2026-03-01")
    jan, feb = (JobRoot(tmp_path / name).read_manifest() for name in ("jan", "feb"))
    assert not {t.task_id for t in pending_tasks(jan)} & {t.task_id for t in pending_tasks(feb)}
    with pytest.raises(TimeRangeError, match=r"is for time range 2026-01-01.*each period needs its own --job_root"):
        write_jobs(config, request, str(tmp_path / "jan"), start="2026-02-01", end="2026-03-01")


def test_dated_local_files_take_the_day_in_the_file_name() -> None:
    assert acquisition_day("tile_r0_c0_2026-02-15") == (
        datetime(2026, 2, 15, tzinfo=UTC),
        datetime(2026, 2, 16, tzinfo=UTC),
    )
    with pytest.raises(ValueError, match="tile_r0_c0: no acquisition date"):
        acquisition_day("tile_r0_c0")


def test_dated_local_files_see_an_acquisition_added_after_the_item_list_was_cached(tmp_path: Path) -> None:
    import shutil

    from rslearn.config import LayerType

    from rslp.pipeline.dated_files import DatedLocalFiles
    from rslp.pipeline.demo import DEMO_DIR, DEMO_SCENE, ensure_scene

    ensure_scene(DEMO_SCENE, DEMO_DIR / "data")
    images = DEMO_DIR / "data" / "images"
    shutil.copy(images / "tile_r0_c0_2026-01-15.tif", tmp_path)
    first = DatedLocalFiles(str(tmp_path), layer_type=LayerType.RASTER).list_items()
    assert [i.geometry.time_range for i in first] == [acquisition_day("2026-01-15")]
    assert (tmp_path / "summary.json").exists()
    shutil.copy(images / "tile_r0_c0_2026-02-15.tif", tmp_path)
    later = DatedLocalFiles(str(tmp_path), layer_type=LayerType.RASTER).list_items()
    assert sorted(i.name for i in later) == ["tile_r0_c0_2026-01-15", "tile_r0_c0_2026-02-15"]


def test_dated_local_files_ignore_an_item_list_cached_through_another_path(tmp_path: Path) -> None:
    """A data folder linked from a temporary copy cached paths through the link; once it was gone, ingest failed."""
    import shutil

    from rslearn.config import LayerType

    from rslp.pipeline.dated_files import DatedLocalFiles
    from rslp.pipeline.demo import DEMO_DIR, DEMO_SCENE, ensure_scene

    ensure_scene(DEMO_SCENE, DEMO_DIR / "data")
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(DEMO_DIR / "data" / "images" / "tile_r0_c0_2026-01-15.tif", folder)
    (tmp_path / "link").symlink_to(folder)
    DatedLocalFiles(str(tmp_path / "link"), layer_type=LayerType.RASTER).list_items()
    (tmp_path / "link").unlink()
    (item,) = DatedLocalFiles(str(folder), layer_type=LayerType.RASTER).list_items()
    assert str(item.src_dir) == str(folder)  # type: ignore[attr-defined]
