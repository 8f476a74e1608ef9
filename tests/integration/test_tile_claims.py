"""Tile claims live as long as their holder: killed or preempted holders never block ingest for long."""

from __future__ import annotations

import json
import signal
import time
from collections import defaultdict
from pathlib import Path

import pytest
from rslearn.dataset import Dataset

from bench.pipeline_queues import demo_variant
from rslp.jobroot import JobRoot
from rslp.pipeline.job import Job
from rslp.pipeline.write_jobs import write_jobs
from rslp.queue import Queue
from rslp.task import Task
from tests.conftest import Backend
from tests.integration.workers import WorkerProc, drain, publish_tasks
from tests.unit.test_pipeline_steps import run_step

pytestmark = pytest.mark.slow

#: The claims' lease period in this test (Pub/Sub's shortest ack deadline, so one figure serves both queues).
CLAIM_SECONDS = 10.0


def _gated_job(tmp_path: Path, topic: str, url: str, q: Queue) -> tuple[str, Path, dict[str, list[Task]]]:
    """The 16-partition demo variant, prepared, its fetches held at a gate; its ingest tasks by scene."""
    folder = tmp_path / "demo"
    folder.mkdir()
    config = demo_variant(folder, 128)
    (folder / "pipeline.yaml").write_text((folder / "pipeline.yaml").read_text().replace("demo-cpu", topic))
    gate = tmp_path / "gate"
    dataset = json.loads((folder / "dataset.json").read_text())
    source = dataset["layers"]["image"]["data_source"]
    source["class_path"] = "rslp.testing.gated_files.GatedLocalFiles"
    source["init_args"]["gate"] = str(gate)
    store = {"class_path": "rslp.pipeline.tiles.SharedTileStore", "init_args": {"claim_seconds": CLAIM_SECONDS}}
    dataset["tile_store"] = store
    (folder / "dataset.json").write_text(json.dumps(dataset))
    q.setup(topic, topic)
    job_root = str(tmp_path / "job")
    write_jobs(str(config), str(folder / "request.geojson"), job_root, queue=url)
    drain(q, topic, lease=60)  # the queued create_windows tasks: this test runs them in-process
    job = Job.load(job_root)
    by_scene: dict[str, list[Task]] = defaultdict(list)
    for partition in job.partition_ids():
        run_step("create_windows", job_root, partition)
        (ingest,) = run_step("prepare", job_root, partition)
        (window, *_) = Dataset(job.dataset_root(partition)).load_windows()
        groups = window.load_layer_datas()["image"].serialized_item_groups
        (scene,) = {item["name"] for group in groups for item in group}
        by_scene[scene].append(ingest.task)
    return job_root, gate, by_scene


def _ingested(job_root: str, tasks: list[Task]) -> bool:
    ledger = JobRoot(job_root)
    return all(ledger.read(t, "done") is not None for t in tasks)


def test_partitions_behind_a_killed_and_a_preempted_claim_holder_are_ingested_within_two_claim_periods(
    backend: Backend, topic: str, tmp_path: Path
) -> None:
    """Two workers each hold a scene's claim mid-fetch; one is SIGKILLed (its claim goes
    stale), the other SIGTERMed (it gives its claim up). Two more workers wait on those
    claims with the scenes' other partitions: all of these are ingested within two claim
    periods of the signals, and the two interrupted partitions are ingested afterwards."""
    q = backend.open()
    job_root, gate, by_scene = _gated_job(tmp_path, topic, backend.url, q)
    (first, *others), (second, *more) = list(by_scene.values())[:2]
    gate.touch()
    claims = Path(job_root) / "tiles" / ".claims"
    publish_tasks(q, topic, [first, second])
    holders = [WorkerProc(backend.url, topic, new_session=True, idle_timeout=120) for _ in range(2)]
    waiters: list[WorkerProc] = []
    try:
        deadline = time.monotonic() + 120
        while len(list(claims.glob("*.claim")) if claims.exists() else []) < 2:
            assert time.monotonic() < deadline, [w.events[-5:] for w in holders]
            time.sleep(0.1)
        publish_tasks(q, topic, others + more)
        waiters = [WorkerProc(backend.url, topic, idle_timeout=120) for _ in range(2)]
        for w in waiters:
            w.wait_for("waiting_for_items", timeout=120)
        holders[0].kill_group()
        holders[1].signal(signal.SIGTERM)
        signalled = time.monotonic()
        # The gate opens only once the SIGTERMed holder is gone: opened sooner, its fetch could finish
        # (and its claim be released the ordinary way) before the worker stops its task process.
        assert holders[1].wait(timeout=30) == 0
        holders[1].wait_for("claims_given_up", timeout=1)  # by its task process, on the worker's SIGTERM
        gate.unlink()
        while not _ingested(job_root, others + more):
            assert time.monotonic() - signalled < 2 * CLAIM_SECONDS, "partitions behind the claims were not ingested"
            time.sleep(0.1)
        waited = time.monotonic() - signalled
        while not _ingested(job_root, [first, second]):  # redelivered (SIGKILL) and handed back (SIGTERM)
            assert time.monotonic() - signalled < 120, "the interrupted partitions were not ingested"
            time.sleep(0.2)
        print(f"{backend.name}: partitions behind the claims ingested {waited:.1f} s after the signals")
    finally:
        for w in holders + waiters:
            w.kill()
        q.close()
