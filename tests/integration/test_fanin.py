"""Fan-in with real workers on both queues: exactly one effective combine, on every partition's output, never none."""

from __future__ import annotations

from pathlib import Path

import pytest

from rslp import registry
from rslp.jobroot import JobRoot
from rslp.pipeline.config import load_pipeline_config
from rslp.pipeline.job import Job
from rslp.pipeline.write_jobs import create_job, write_jobs
from rslp.task import Downstream
from tests.conftest import Backend
from tests.integration.fanin_pipeline import DEMO_REQUEST, combine_runs, write_pipeline
from tests.integration.workers import WorkerProc, publish_tasks


@pytest.fixture(autouse=True)
def _allow_the_tests_postprocessor(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pipeline names a postprocessor from tests/: the operator allows its module (workers inherit it)."""
    monkeypatch.setenv("RSLP_CLASS_PREFIXES", "tests.integration")


def small_groups(config: Path, job_root: Path, queue: str) -> int:
    """A new job whose fan-in groups hold 3 units, so its 16 partitions make a tree of 3 levels (16, 6, 2)."""
    header = create_job(load_pipeline_config(config), str(DEMO_REQUEST), str(job_root), queue)
    JobRoot(job_root).write_manifest(header.model_copy(update={"fanin_group_size": 3}))
    return header.partition_count


def run_step(step: str, job_root: Path, partition: str) -> list[Downstream]:
    return registry.get("pipeline", step).run(["--job_root", str(job_root), "--partition", partition])  # type: ignore[no-any-return]


def test_partitions_finishing_together_on_three_workers_give_one_combine_of_all(
    backend: Backend, topic: str, tmp_path: Path
) -> None:
    config, job_root = write_pipeline(tmp_path, topic), tmp_path / "job"
    partitions = small_groups(config, job_root, backend.url)
    write_jobs(str(config), str(DEMO_REQUEST), str(job_root), queue=backend.url)
    subs = f"{topic}-combine,{topic}-cpu"
    workers = [WorkerProc(backend.url, subs, idle_timeout=8) for _ in range(3)]
    assert [w.wait(timeout=300) for w in workers] == [0, 0, 0], [w.raw[-3:] for w in workers]
    assert partitions == 16 and sum(w.count("done") for w in workers) >= 2 * partitions + 1
    assert combine_runs(tmp_path) == [partitions]  # one run, with every partition's file
    assert (Job.load(str(job_root)).output_dir / "tally.txt").read_text() == str(partitions)


def test_a_worker_killed_after_the_last_partitions_marker_still_gets_combine_published(
    backend: Backend, topic: str, tmp_path: Path
) -> None:
    config, job_root = write_pipeline(tmp_path, topic), tmp_path / "job"
    partitions = small_groups(config, job_root, backend.url)
    job = Job.load(str(job_root))
    asked = []
    for pid in job.partition_ids():
        run_step("create_windows", job_root, pid)
        downstream = run_step("postprocess", job_root, pid)
        if any(d.task.step == "combine" for d in downstream):
            asked.append((pid, downstream))
    assert len(asked) == 1  # only the last partition asked for combine
    pid, downstream = asked[0]
    last = job.task("postprocess", pid)
    # Its worker wrote the done marker (recording combine) and was killed before publishing it.
    JobRoot(job_root).mark(last, "done", downstream=[d.model_dump(mode="json") for d in downstream])
    q = backend.open()
    for t in (f"{topic}-cpu", f"{topic}-combine"):
        q.setup(t, t)
    publish_tasks(q, f"{topic}-cpu", [last])  # the redelivery of its message
    q.close()
    worker = WorkerProc(backend.url, f"{topic}-combine,{topic}-cpu", idle_timeout=5)
    assert worker.wait(timeout=120) == 0, worker.raw[-3:]
    assert worker.count("skipped_done") == 1
    assert combine_runs(tmp_path) == [partitions]
