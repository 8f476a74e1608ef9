"""write_jobs: manifest, batched publishing, skipping what is done, refusing bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rslp.errors import PermanentError
from rslp.jobroot import JobRoot
from rslp.pipeline import write_jobs as write_jobs_module
from rslp.pipeline.job import JOB_PARTITION, make_task
from rslp.pipeline.partition import GridPartitioner, load_request
from rslp.pipeline.write_jobs import write_jobs
from rslp.queue import Queue, open_queue
from rslp.queue.placement import default_queue_url
from rslp.task import Task, decode_task

STEPS = ["create_windows", "prepare", "ingest", "materialize", "predict", "postprocess"]


def submit(demo: Path, job_root: Path, request: str = "request.geojson", republish: bool = False) -> str:
    """write_jobs; returns the job id from the manifest."""
    write_jobs(str(demo / "pipeline.yaml"), str(demo / request), str(job_root), republish=republish)
    return JobRoot(job_root).read_manifest().job_id


def drain(job_root: Path) -> list[Task]:
    """Every message on the job's subscriptions, acked."""
    tasks = []
    with open_queue(str(JobRoot(job_root).read_manifest().queue)) as q:
        for sub in ("demo-cpu", "demo-gpu", "demo-combine"):
            while messages := q.pull(sub, lease_seconds=30, max_messages=100):
                for m in messages:
                    tasks.append(decode_task(m.data))
                    q.ack(m)
    return tasks


def mark_done(job_root: Path, partition: str, steps: list[str]) -> None:
    manifest = JobRoot(job_root).read_manifest()
    for step in steps:
        JobRoot(job_root).mark(make_task(manifest.job_id, str(job_root), step, partition), "done", downstream=[])


def test_writes_manifest_and_publishes_first_step_of_each_partition(demo_copy: Path, tmp_path: Path) -> None:
    job_root = tmp_path / "job"
    job_id = submit(demo_copy, job_root)
    manifest = JobRoot(job_root).read_manifest()
    assert manifest.job_id == job_id and manifest.job_root == str(job_root)
    assert manifest.steps == STEPS and manifest.job_steps == ["combine", "observe"]
    assert manifest.topics["predict"] == "demo-gpu" and manifest.queue == default_queue_url(str(job_root))
    assert manifest.partition_count == 4 and "partitions" not in manifest.model_dump()
    records = list(JobRoot(job_root).partitions(manifest))
    assert [p.id for p in records] == ["p00000", "p00001", "p00002", "p00003"]
    assert all(p.geometry["type"] == "Polygon" for p in records)
    tasks = drain(job_root)
    assert sorted((t.step, t.partition) for t in tasks) == [("create_windows", p.id) for p in records]
    task = tasks[0]
    assert task.project == "pipeline" and task.job_id == job_id and task.job_root == str(job_root)
    assert task.args == ["--job_root", str(job_root), "--partition", task.partition]
    assert task.task_id == make_task(job_id, str(job_root), "create_windows", task.partition or "").task_id


def test_rerun_of_a_finished_job_publishes_nothing(demo_copy: Path, tmp_path: Path) -> None:
    job_root = tmp_path / "job"
    job_id = submit(demo_copy, job_root)
    drain(job_root)
    for pid in JobRoot(job_root).read_manifest().partition_ids():
        mark_done(job_root, pid, STEPS)
    mark_done(job_root, JOB_PARTITION, ["combine", "observe"])
    assert submit(demo_copy, job_root) == job_id
    assert drain(job_root) == []


def test_republish_of_a_half_finished_job_publishes_only_what_is_missing(demo_copy: Path, tmp_path: Path) -> None:
    job_root = tmp_path / "job"
    submit(demo_copy, job_root)
    drain(job_root)  # the queue lost them
    mark_done(job_root, "p00000", STEPS)
    mark_done(job_root, "p00001", STEPS[:4])
    mark_done(job_root, "p00002", STEPS)
    JobRoot(job_root).mark(
        make_task(JobRoot(job_root).read_manifest().job_id, str(job_root), "predict", "p00001"), "dead", error="x"
    )
    submit(demo_copy, job_root, republish=True)
    assert sorted((t.step, t.partition) for t in drain(job_root)) == [
        ("create_windows", "p00003"),
        ("predict", "p00001"),
    ]


def test_combine_is_republished_when_only_it_is_missing(demo_copy: Path, tmp_path: Path) -> None:
    job_root = tmp_path / "job"
    submit(demo_copy, job_root)
    drain(job_root)
    for pid in JobRoot(job_root).read_manifest().partition_ids():
        mark_done(job_root, pid, STEPS)
    submit(demo_copy, job_root)  # not --republish: combine is never in the publish log
    assert [(t.step, t.partition) for t in drain(job_root)] == [("combine", JOB_PARTITION)]


def test_publishes_in_batches_not_one_call_per_message(
    demo_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real_open = write_jobs_module.open_queue

    def spy(url: str, weather: Any = None, create: bool = False) -> Queue:
        q = real_open(url, weather, create)
        publish = q.publish

        def counted(topic: str, messages: Any) -> list[str]:
            calls.append(len(messages))
            return publish(topic, messages)

        q.publish = counted  # type: ignore[method-assign]
        return q

    monkeypatch.setattr(write_jobs_module, "open_queue", spy)
    monkeypatch.setattr(write_jobs_module, "PUBLISH_CHUNK", 3)
    submit(demo_copy, tmp_path / "job")
    assert calls == [3, 1]


def break_dataset(demo: Path) -> None:
    (demo / "dataset.json").write_text(json.dumps({"layers": {"image": {"type": "raster", "band_sets": "B1"}}}))


def empty_request(demo: Path) -> None:
    (demo / "request.geojson").write_text('{"type": "FeatureCollection", "features": []}')


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (empty_request, "request.geojson: features: the request is empty"),
        (break_dataset, "dataset.json: layers.image.band_sets: Input should be a valid list"),
        (lambda d: (d / "checkpoint.ckpt").unlink(), "pipeline.yaml: checkpoint: "),
        (lambda d: (d / "data").unlink(), "dataset.json: layers.image.data_source.init_args.src_dir: "),
    ],
)
def test_bad_input_fails_in_one_line_and_publishes_nothing(
    demo_copy: Path, tmp_path: Path, breakage: Any, expected: str
) -> None:
    breakage(demo_copy)
    job_root = tmp_path / "job"
    with pytest.raises(PermanentError) as e:
        submit(demo_copy, job_root)
    assert expected in str(e.value) and "\n" not in str(e.value)
    assert str(demo_copy) in str(e.value)
    assert not job_root.exists()


def test_a_job_root_holding_another_request_is_refused(demo_copy: Path, tmp_path: Path) -> None:
    job_root = tmp_path / "job"
    submit(demo_copy, job_root)
    shutil.copy(demo_copy / "request.geojson", demo_copy / "other.geojson")
    with pytest.raises(PermanentError, match=r"manifest.json: job .* use another --job_root"):
        submit(demo_copy, job_root, "other.geojson")


def finer_partitions(demo: Path, cell_size: int) -> None:
    """The demo pipeline with partitions of ``cell_size`` pixels (the windows stay 64 px)."""
    text = (demo / "pipeline.yaml").read_text()
    (demo / "pipeline.yaml").write_text(text.replace("{cell_size: 256,", f"{{cell_size: {cell_size},", 1))


def test_a_plan_over_max_partitions_fails_in_one_line_before_anything_is_written(
    demo_copy: Path, tmp_path: Path
) -> None:
    finer_partitions(demo_copy, 8)  # a mistyped cell_size: 1,024 times the partitions
    with (demo_copy / "pipeline.yaml").open("a") as f:
        f.write("max_partitions: 1000\n")
    job_root = tmp_path / "job"
    with pytest.raises(PermanentError) as e:
        submit(demo_copy, job_root)
    message = str(e.value)
    cells = sum(1 for _ in GridPartitioner(cell_size=8).partition(load_request(str(demo_copy / "request.geojson"))))
    assert f"the plan has {cells} partitions, over max_partitions=1000 (" in message and "\n" not in message
    assert "pipeline.yaml: max_partitions, or --max_partitions" in message
    assert not job_root.exists()


def test_the_max_partitions_flag_overrides_the_config(demo_copy: Path, tmp_path: Path) -> None:
    job_root = tmp_path / "job"
    config, request = str(demo_copy / "pipeline.yaml"), str(demo_copy / "request.geojson")
    with pytest.raises(PermanentError, match=r"the plan has 4 partitions, over max_partitions=3 .*--max_partitions"):
        write_jobs(config, request, str(job_root), max_partitions=3)
    assert not job_root.exists()
    write_jobs(config, request, str(job_root), max_partitions=4)
    assert JobRoot(job_root).read_manifest().partition_count == 4


KILLED_WHILE_PUBLISHING = """
import sys, time
from pathlib import Path
from rslp.pipeline import write_jobs as w
from rslp.queue.local import LocalQueue

real = LocalQueue.publish
calls = []
def publish(self, topic, messages):
    ids = real(self, topic, messages)
    calls.append(len(messages))
    if len(calls) == int(sys.argv[5]):
        Path(sys.argv[4]).write_text("published")
        time.sleep(600)  # killed here, with the rest of the tasks still to publish
    return ids
LocalQueue.publish = publish
w.PUBLISH_CHUNK = 10
w.write_jobs(sys.argv[1], sys.argv[2], sys.argv[3])
"""


def kill_write_jobs_at_publish(config: str, request: str, job_root: Path, tmp_path: Path, call: int) -> None:
    """Run write-jobs in a child and SIGKILL it inside its ``call``-th publish (after the queue took it)."""
    signal_file = tmp_path / "published"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WHILE_PUBLISHING, config, request, str(job_root), str(signal_file), str(call)]
    )
    try:
        deadline = time.monotonic() + 120
        while not signal_file.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert signal_file.exists(), "write_jobs never published"
    finally:
        proc.kill()  # SIGKILL: no cleanup, no flush
        proc.wait()


def test_write_jobs_killed_halfway_and_rerun_publishes_again_only_the_span_in_flight(
    demo_copy: Path, tmp_path: Path
) -> None:
    finer_partitions(demo_copy, 64)  # 56 partitions: spans of 10
    job_root = tmp_path / "job"
    config, request = str(demo_copy / "pipeline.yaml"), str(demo_copy / "request.geojson")
    kill_write_jobs_at_publish(config, request, job_root, tmp_path, call=4)  # spans 0-2 confirmed, 3 in flight
    partitions = JobRoot(job_root).read_manifest().partition_count
    write_jobs(config, request, str(job_root))
    tasks = drain(job_root)
    assert {t.partition for t in tasks} == {f"p{i:05d}" for i in range(partitions)}
    assert len(tasks) == partitions + 10  # only span 3 went out twice
    write_jobs(config, request, str(job_root))  # a rerun after a whole run publishes nothing
    assert drain(job_root) == []
    write_jobs(config, request, str(job_root), republish=True)  # unless asked to
    assert len(drain(job_root)) == partitions


def test_write_jobs_killed_while_publishing_and_rerun_loses_no_partition(demo_copy: Path, tmp_path: Path) -> None:
    finer_partitions(demo_copy, 64)  # 56 partitions: several publish chunks
    job_root = tmp_path / "job"
    config, request = str(demo_copy / "pipeline.yaml"), str(demo_copy / "request.geojson")
    kill_write_jobs_at_publish(config, request, job_root, tmp_path, call=1)
    partitions = JobRoot(job_root).read_manifest().partition_count
    before = drain(job_root)
    assert partitions > 30 and len(before) == 10  # killed after the first of several chunks
    write_jobs(config, request, str(job_root))
    after = drain(job_root)
    assert {t.partition for t in before + after} == {f"p{i:05d}" for i in range(partitions)}
    assert {t.step for t in before + after} == {"create_windows"}
