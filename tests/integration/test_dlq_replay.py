"""Dead letters end to end with real workers: tasks die for a real cause, it is fixed, replay, the job completes."""

from __future__ import annotations

from pathlib import Path

from rslp.dlq import dlq_list, dlq_replay
from rslp.jobroot import JobManifest, JobRoot
from rslp.status.model import collect
from rslp.task import Task
from tests.conftest import Backend
from tests.integration.workers import WorkerProc, publish_tasks
from tests.unit.test_status_report import square

PARTITIONS = ["p00000", "p00001", "p00002", "p00003"]


def test_fix_the_cause_replay_and_the_job_completes(backend: Backend, topic: str, tmp_path: Path) -> None:
    root, out = tmp_path / "job", tmp_path / "not-yet" / "out"
    manifest = JobManifest(
        job_id="replay-test",
        job_root=str(root),
        config="-",
        request="-",
        queue=backend.url,
        steps=["write"],
        topics={"write": topic},
    )
    manifest = JobRoot(root).write_job(manifest, [{"geometry": square(i, 2)} for i in range(len(PARTITIONS))])
    # Each task writes into a folder that does not exist yet: FileNotFoundError on every attempt.
    tasks = [
        Task(
            project="common",
            workflow="write_file",
            args=[str(out / f"{p}.txt"), p],
            job_id=manifest.job_id,
            job_root=str(root),
            partition=p,
            step="write",
        )
        for p in PARTITIONS
    ]
    q = backend.open()
    q.setup(topic, topic)
    publish_tasks(q, topic, tasks)
    q.close()

    first = WorkerProc(backend.url, topic, idle_timeout=2, max_attempts=2, retries=100)
    assert first.wait() == 0
    assert first.count("dead_lettered") == len(PARTITIONS)
    job = collect(str(root))
    assert job.steps[0].counts["dead"] == len(PARTITIONS) and job.partitions == dict.fromkeys(PARTITIONS, "dead")
    assert [(g.count, g.state, g.kind) for g in job.failures] == [(4, "dead", "error")]
    assert "FileNotFoundError" in job.failures[0].reason

    letters = dlq_list(job_root=str(root), reason="filenotfounderror")
    assert sorted(d.id for d in letters) == sorted(t.task_id for t in tasks)
    assert {d.attempts for d in letters} == {"2"}

    out.mkdir(parents=True)  # the fix
    replayed = dlq_replay(job_root=str(root), queue=backend.url, reason="FileNotFoundError")
    assert sorted(replayed) == sorted(t.task_id for t in tasks)
    # Replayed, not yet run: no longer dead; shown as failed (earlier attempts failed), ready to retry.
    assert collect(str(root)).steps[0].counts["failed"] == len(PARTITIONS)

    second = WorkerProc(backend.url, topic, idle_timeout=2, max_attempts=2, retries=100)
    assert second.wait() == 0
    assert second.count("done") == len(PARTITIONS) and second.count("dead_lettered") == 0
    assert sorted(p.read_text() for p in out.iterdir()) == PARTITIONS
    job = collect(str(root))
    assert job.steps[0].counts == {**dict.fromkeys(job.steps[0].counts, 0), "done": len(PARTITIONS)}
    assert job.finished and job.partitions == dict.fromkeys(PARTITIONS, "done")
    assert dlq_list(job_root=str(root)) == []
