"""The job's shared tile store: each scene fetched once whatever the partitions it overlaps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
        "for p in sys.argv[2:]: steps.ingest(job_root=sys.argv[1], partition=p)"
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


def test_claims_let_one_task_fetch_and_the_other_wait(tmp_path: Path) -> None:
    config = shared_tile_store_config(UPath(tmp_path / "tiles"), None)
    config["init_args"]["claim_seconds"] = 0.5
    from rslearn.tile_stores import load_tile_store

    store = load_tile_store(config, UPath(tmp_path / "p0"))
    assert isinstance(store, SharedTileStore)
    assert store.claim("image", "scene")
    claim = tmp_path / "tiles" / "image" / "scene.claim"
    claim.write_text(json.dumps({"owner": "another-task", "at": 1e12}))  # held by a live task
    assert not store.claim("image", "scene")
    claim.write_text(json.dumps({"owner": "a-dead-task", "at": 0}))  # its holder died long ago
    store.wait_released("image", ["scene"])
    assert store.claim("image", "scene")
    store.release("image", "scene")
    assert not claim.exists()


def _geometry(f: rasterio.io.DatasetReader) -> object:
    import shapely
    from rslearn.utils.geometry import Projection, STGeometry

    projection = Projection(f.crs, f.transform.a, f.transform.e)
    minx, miny, maxx, maxy = f.bounds
    box = shapely.box(minx / f.transform.a, maxy / f.transform.e, maxx / f.transform.a, miny / f.transform.e)
    return STGeometry(projection, box, None)
