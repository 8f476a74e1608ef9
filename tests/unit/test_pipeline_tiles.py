"""The job's shared tile store: each scene fetched once whatever the partitions it overlaps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import rasterio
from upath import UPath

from bench.pipeline_queues import demo_variant
from rslp.pipeline import predict as predict_module
from rslp.pipeline.demo import DEMO_DIR
from rslp.pipeline.job import Job
from rslp.pipeline.tiles import SharedTileStore, shared_tile_store_config
from rslp.pipeline.write_jobs import write_jobs
from tests.unit.test_pipeline_steps import run_step

REPO = Path(__file__).resolve().parents[2]


def _ingest_in_processes(job_root: str, groups: list[list[str]]) -> list[dict[str, object]]:
    """Ingest each group of partitions in its own process, all at once; their log events."""
    code = (
        "import sys; from rslp import log; log.setup(); from rslp.pipeline import steps\n"
        'for p in sys.argv[2:]: steps.by_hand("ingest", job_root=sys.argv[1], partition=p)'
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled"}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, job_root, *group], stderr=subprocess.PIPE, text=True, env=env)
        for group in groups
    ]
    events = []
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        for line in err.splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict):
                events.append(event)
    return events


def _finish_in_process(job_root: str, partitions: list[str], steps: list[str]) -> None:
    for step in steps:
        for partition in partitions:
            run_step(step, job_root, partition)


@pytest.mark.slow  # the demo's steps for several partitions at once
def test_each_scene_is_fetched_once_by_concurrent_partitions_and_the_merged_output_is_unchanged(
    tmp_path: Path,
) -> None:
    """16 partitions over 4 scenes (each scene overlaps 4 partitions), ingested by 4
    processes at once: 4 fetches, as many bytes as the scenes, one tile store; the merged
    output equals that of the 4-partition job, where each scene has one partition."""
    predict_module._MODELS.clear()
    outputs = {}
    for cell_size in (128, 256):
        folder = tmp_path / f"demo{cell_size}"
        folder.mkdir()
        config = demo_variant(folder, cell_size)
        job_root = str(tmp_path / f"job{cell_size}")
        write_jobs(str(config), str(folder / "request.geojson"), job_root)
        job = Job.load(job_root)
        partitions = list(job.manifest.partition_ids())
        _finish_in_process(job_root, partitions, ["create_windows", "prepare"])
        if cell_size == 128:
            assert len(partitions) == 16
            events = _ingest_in_processes(job_root, [partitions[i::4] for i in range(4)])
            stored = Counter(e["item"] for e in events if e.get("event") == "tile_stored")
            # The demo job's period is January (pipeline.yaml's time_range): its four scenes.
            scenes = sorted((DEMO_DIR / "data" / "images").glob("*_2026-01-*.tif"))
            assert stored == Counter({s.stem: 1 for s in scenes})
            fetched = sum(int(e["source_bytes"]) for e in events if e.get("event") == "tile_stored")
            assert fetched == sum(s.stat().st_size for s in scenes)
            assert not any((job.dataset_root(p) / "tiles").exists() for p in partitions)
        else:
            _finish_in_process(job_root, partitions, ["ingest"])
        _finish_in_process(job_root, partitions, ["materialize", "predict", "postprocess"])
        run_step("combine", job_root, "job")
        with rasterio.open(job.output_paths()[0].path) as f:
            outputs[cell_size] = (f.read(), f.transform)
    assert outputs[128][1] == outputs[256][1]
    assert np.array_equal(outputs[128][0], outputs[256][0])


def test_a_second_writer_of_a_stored_item_keeps_the_first_copy(tmp_path: Path) -> None:
    """Two writers of one item (a stale claim taken over): the item is whole and written once."""
    from rslearn.data_sources import Item
    from rslearn.tile_stores import load_tile_store

    config = shared_tile_store_config(UPath(tmp_path / "tiles"), None)
    stores = [load_tile_store(config, UPath(tmp_path / f"partition{i}")) for i in range(2)]
    assert all(isinstance(s, SharedTileStore) for s in stores)
    scene = sorted((DEMO_DIR / "data" / "images").glob("*.tif"))[0]
    with rasterio.open(scene) as f:
        item = Item(scene.stem, _geometry(f))
    bands = ["B1", "B2", "B3"]
    for store in stores:
        store.write_raster_file("image", item, bands, UPath(scene))
    assert stores[1].is_raster_ready("image", item, bands)
    item_dir = tmp_path / "tiles" / "image" / scene.stem
    assert [p.name for p in item_dir.iterdir()] == ["B1_B2_B3"]
    assert not [p for p in (tmp_path / "tiles").iterdir() if p.name.startswith(".staging")]


def _store(tmp_path: Path, **claims: float) -> SharedTileStore:
    from rslearn.tile_stores import load_tile_store

    config = shared_tile_store_config(UPath(tmp_path / "tiles"), None)
    config["init_args"].update(claims)
    store = load_tile_store(config, UPath(tmp_path / "p0"))
    assert isinstance(store, SharedTileStore)
    return store


def _claim_file(tmp_path: Path) -> Path:
    (claim,) = (tmp_path / "tiles" / ".claims").iterdir()
    return claim


def test_a_claim_is_judged_by_its_modification_time_not_by_its_content(tmp_path: Path) -> None:
    """A claim dated far in the future, or left empty by a crash, stops holding once the store's clock says so."""
    store = _store(tmp_path, claim_seconds=5)
    assert store.claim("image", "scene")
    claim = _claim_file(tmp_path)
    for content, mtime in (
        (json.dumps({"owner": "another-task", "at": 1e12}), time.time() - 60),  # forged date, silent for a minute
        ("", time.time() - 60),  # a crash between create and write
        ("", time.time() + 86_400),  # the file itself dated tomorrow
    ):
        claim.write_text(content)
        os.utime(claim, (mtime, mtime))
        assert store.claim("image", "scene"), (content, mtime)
    claim.write_text("")  # empty but just written: its holder may be writing it
    assert not store.claim("image", "scene")


def test_item_names_never_leave_the_claims_folder(tmp_path: Path) -> None:
    store = _store(tmp_path)
    outside = tmp_path / "escape.claim"
    assert store.claim("image", f"../../../{outside.stem}")
    assert store.claim("../..", "../escape")
    assert not outside.exists()
    claims = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.claim"))
    assert len(claims) == 2 and all(c.parent == Path("tiles/.claims") for c in claims)


def test_a_held_claim_stays_fresh_while_its_holder_works_and_is_given_up_after(tmp_path: Path) -> None:
    store, waiter = _store(tmp_path, claim_seconds=0.6), _store(tmp_path, claim_seconds=0.6)
    with store.holding("image", ["scene", "other"]) as mine:
        assert mine == ["scene", "other"]
        claims = list((tmp_path / "tiles" / ".claims").iterdir())
        written = [c.stat().st_mtime for c in claims]
        time.sleep(1.5)  # the holder works for over two claim periods
        assert all(c.stat().st_mtime > w for c, w in zip(claims, written, strict=True))
        assert not waiter.claim("image", "scene")
    assert not list((tmp_path / "tiles" / ".claims").iterdir())
    assert waiter.claim("image", "scene")


def test_a_wait_for_a_live_holder_is_bounded(tmp_path: Path) -> None:
    store, waiter = _store(tmp_path, claim_seconds=0.6), _store(tmp_path, claim_seconds=0.6, max_wait_seconds=1.0)
    with store.holding("image", ["scene"]):
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="image/scene was still claimed by another task after 1 s"):
            waiter.wait_released("image", ["scene"])
        assert time.monotonic() - started < 3


def test_a_stale_claim_ends_the_wait(tmp_path: Path) -> None:
    store = _store(tmp_path, claim_seconds=0.5)
    assert store.claim("image", "scene")  # its holder then dies: nobody rewrites it
    started = time.monotonic()
    store.wait_released("image", ["scene"])
    assert 0.4 < time.monotonic() - started < 3
    assert store.claim("image", "scene")


def test_sigterm_gives_up_the_claims_of_a_task_process_and_still_ends_it(tmp_path: Path) -> None:
    code = (
        "import sys, time; from upath import UPath; from rslp.pipeline.tiles import SharedTileStore\n"
        "store = SharedTileStore(path_suffix=sys.argv[1]); store.set_dataset_path(UPath(sys.argv[1]))\n"
        "with store.holding('image', ['scene']):\n"
        "    print('holding', flush=True); time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / "tiles")], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    assert list((tmp_path / "tiles" / ".claims").iterdir())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == -signal.SIGTERM
    assert not list((tmp_path / "tiles" / ".claims").iterdir())


def _geometry(f: rasterio.io.DatasetReader) -> object:
    import shapely
    from rslearn.utils.geometry import Projection, STGeometry

    projection = Projection(f.crs, f.transform.a, f.transform.e)
    minx, miny, maxx, maxy = f.bounds
    box = shapely.box(minx / f.transform.a, maxy / f.transform.e, maxx / f.transform.a, miny / f.transform.e)
    return STGeometry(projection, box, None)


def test_a_claim_taken_over_from_a_silent_holder_is_left_to_its_new_holder(tmp_path: Path) -> None:
    store = _store(tmp_path, claim_seconds=30)
    with store.holding("image", ["scene"]):
        claim = _claim_file(tmp_path)
        claim.write_text(json.dumps({"owner": "the-task-that-took-it-over"}))  # we were silent too long
    assert json.loads(claim.read_text())["owner"] == "the-task-that-took-it-over"
