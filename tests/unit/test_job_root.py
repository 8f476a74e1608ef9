"""The job root's header and partition records: a task reads the small header and one shard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from upath import UPath

from rslp.errors import PermanentError
from rslp.jobroot import JobManifest, JobRoot, partition_id, partition_index
from rslp.pipeline.job import Job
from tests.unit.test_status_report import square


def header(root: UPath | Path, shard_size: int = 100) -> JobManifest:
    return JobManifest(
        job_id="records-test",
        job_root=str(root),
        config="pipeline.yaml",
        request="request.geojson",
        steps=["create_windows"],
        topics={"create_windows": "t-cpu"},
        shard_size=shard_size,
    )


def test_a_partition_is_read_from_its_own_shard_alone(tmp_path: Path) -> None:
    ledger = JobRoot(tmp_path)
    manifest = ledger.write_job(header(tmp_path), ({"geometry": square(i, 40)} for i in range(1050)))
    assert manifest.partition_count == 1050
    assert len(ledger.manifest_path.read_text()) < 1000  # the header does not grow with the job
    keep = ledger.shard_path(5)
    for shard in (tmp_path / "records").iterdir():
        if shard.name != keep.name:
            shard.unlink()
    read_back = ledger.read_manifest()
    assert read_back == manifest
    entry = ledger.partition(read_back, "p00523")
    assert entry.id == "p00523" and entry.geometry == square(523, 40)


def test_partitions_stream_in_plan_order_across_shards(tmp_path: Path) -> None:
    ledger = JobRoot(tmp_path)
    manifest = ledger.write_job(header(tmp_path, shard_size=7), ({"geometry": square(i, 10)} for i in range(50)))
    assert sorted(p.name for p in (tmp_path / "records").iterdir()) == [f"{i:05d}.jsonl" for i in range(8)]
    entries = list(ledger.partitions(manifest))
    assert [e.id for e in entries] == [partition_id(i) for i in range(50)] == list(manifest.partition_ids())
    assert [e.geometry for e in entries] == [square(i, 10) for i in range(50)]


def test_an_unknown_or_malformed_partition_is_permanent_in_one_line(tmp_path: Path) -> None:
    ledger = JobRoot(tmp_path)
    manifest = ledger.write_job(header(tmp_path), ({"geometry": square(i, 4)} for i in range(3)))
    with pytest.raises(PermanentError, match=r"manifest.json: partition_count: no partition 'p00003' \(the job has 3"):
        ledger.partition(manifest, "p00003")
    with pytest.raises(PermanentError, match=r"manifest.json: '../x' is not a partition id"):
        ledger.partition(manifest, "../x")
    assert partition_index("p123456") == 123456
    with pytest.raises(ValueError):
        partition_index("p0001")  # not how partition ids are written


def test_the_header_is_written_after_every_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write-jobs killed while writing records leaves no header, so a rerun plans again."""
    ledger = JobRoot(tmp_path)
    written: list[int] = []

    def write_shards(batch: dict[UPath, str]) -> None:
        if written:
            raise KeyboardInterrupt("killed while writing records")
        written.append(len(batch))
        for path, text in batch.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)

    monkeypatch.setattr(ledger, "_write_shards", write_shards)
    with pytest.raises(KeyboardInterrupt):
        ledger.write_job(header(tmp_path, shard_size=1), ({"geometry": square(i, 10)} for i in range(100)))
    assert written and not ledger.manifest_path.exists()


def test_a_job_root_on_an_object_store_reads_and_writes_the_same(tmp_path: Path) -> None:
    """memory:// is an fsspec object store (no rename): shards go in concurrent whole-object writes."""
    root = UPath("memory://bucket/jobs/records-test")
    ledger = JobRoot(root)
    manifest = ledger.write_job(header(root, shard_size=10), ({"geometry": square(i, 10)} for i in range(95)))
    assert manifest.partition_count == 95
    assert len(list((root / "records").iterdir())) == 10
    assert ledger.partition(ledger.read_manifest(), "p00094").geometry == square(94, 10)
    assert sum(1 for _ in ledger.partitions(manifest)) == 95


def test_job_load_reads_the_header_and_not_the_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rslp.pipeline import job as job_module

    ledger = JobRoot(tmp_path)
    ledger.write_job(header(tmp_path).model_copy(update={"config": "pipeline.yaml"}), [{"geometry": square(0, 1)}])

    class Config(str):  # the config as loaded, without reading pipeline.yaml or dataset.json
        def read_dataset(self) -> dict[str, object]:
            return {}

        def remember_secrets(self, raw: object) -> None:
            pass

    monkeypatch.setattr(job_module, "load_pipeline_config", lambda path: Config(f"config from {path}"))
    (tmp_path / "records" / "00000.jsonl").unlink()
    job = Job.load(str(tmp_path))
    assert job.manifest.partition_count == 1 and job.config == "config from pipeline.yaml"
    assert job.dataset_root("p00000") == UPath(tmp_path) / "partitions" / "p00000"


def test_a_manifest_from_before_records_is_refused_in_one_line(tmp_path: Path) -> None:
    old = header(tmp_path).model_dump(mode="json") | {"partitions": [{"id": "p00000", "geometry": square(0, 1)}]}
    (tmp_path / "manifest.json").write_text(json.dumps(old))
    with pytest.raises(PermanentError) as e:
        Job.load(str(tmp_path))
    assert str(e.value) == (
        f"{tmp_path}/manifest.json: partitions: unknown field (not part of the job header) "
        "(a job root from before records/: rerun write-jobs into a new job root)"
    )


def test_the_layout_is_the_one_existing_job_roots_have(tmp_path: Path) -> None:
    """Job roots written by earlier versions stay readable: every name under a root comes from JobRoot."""
    job = JobRoot(tmp_path)
    relative = {
        "manifest": job.manifest_path,
        "shard": job.shard_path(3),
        "marker": job.marker_path("prepare", "abc", "done"),
        "dataset": job.dataset_root("p00042"),
        "tiles": job.tiles,
        "partition output": job.partition_output("prediction", "p00042", ".tif"),
        "fan-in unit": job.fanin_unit(1, 2, 205),
        "fan-in ready": job.fanin_ready,
        "publish log": job.publish_log("0123abcd"),
        "output": job.output_dir,
    }
    assert {k: str(v.relative_to(UPath(tmp_path))) for k, v in relative.items()} == {
        "manifest": "manifest.json",
        "shard": "records/00003.jsonl",
        "marker": "markers/prepare/abc.done.json",
        "dataset": "partitions/p00042",
        "tiles": "tiles",
        "partition output": "partition_outputs/prediction/p00042.tif",
        "fan-in unit": "fanin/1/000002/000205",
        "fan-in ready": "fanin/ready",
        "publish log": "published/0123abcd",
        "output": "output",
    }


@pytest.mark.parametrize("pid", ["..", "../p00000", "/etc", ""])
def test_a_partition_dataset_never_lies_outside_the_root(tmp_path: Path, pid: str) -> None:
    with pytest.raises(PermanentError, match=r"not a valid id|not under"):
        JobRoot(tmp_path).dataset_root(pid)
