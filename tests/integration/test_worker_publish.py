"""Downstream publishes: a transient failure is retried and the parent is acked only after it succeeds."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rslp.jobroot import JobRoot
from rslp.queue import Outgoing, Received
from rslp.queue.local import LocalQueue
from rslp.task import Task
from rslp.worker.loop import Worker
from rslp.worker.settings import WorkerSettings
from tests.integration.workers import drain, write_job


class FlakyQueue(LocalQueue):
    """The real embedded queue, whose publishes to one topic fail the first ``failures`` times."""

    def __init__(self, path: Path, flaky_topic: str, failures: int, ledger: JobRoot, task: Task) -> None:
        super().__init__(path)
        self.flaky_topic, self.failures = flaky_topic, failures
        self.ledger, self.task = ledger, task
        self.log: list[str] = []

    def publish(self, topic: str, messages: Sequence[Outgoing]) -> list[str]:
        if topic == self.flaky_topic:
            marked = self.ledger.read(self.task, "done") is not None
            self.log.append(f"publish(marked={marked})")
            if self.failures > 0:
                self.failures -= 1
                raise ConnectionError("transient: publish failed")
        return super().publish(topic, messages)

    def ack(self, message: Received) -> None:
        self.log.append("ack")
        super().ack(message)


def test_transient_downstream_publish_failure_is_retried_before_ack(tmp_path: Path) -> None:
    job = JobRoot(tmp_path / "job")
    write_job(tmp_path / "job", "j", {"chain": "first-step", "write": "next-step"})
    task = Task(
        project="common",
        workflow="chain",
        args=[str(tmp_path / "a"), "next-step", str(tmp_path / "b")],
        job_id="j",
        job_root=str(job.root),
        partition="p00000",
        step="chain",
    )
    q = FlakyQueue(tmp_path / "q.db", "next-step", failures=2, ledger=job, task=task)
    q.setup("first-step", "first-step")
    q.setup("next-step", "next-step")
    q.publish("first-step", [Outgoing(task.encode())])
    settings = WorkerSettings(
        queue=f"local://{tmp_path / 'q.db'}",
        subscription=["first-step"],
        idle_timeout=1,
        scratch_root=str(tmp_path / "scratch"),
        allow_diagnostics=True,  # the tasks are diagnostics
    )
    assert Worker(settings, queue=q).run() == "idle"
    # Work and mark happen first; two failed publishes, a good one, and only then the ack.
    assert q.log == ["publish(marked=True)"] * 3 + ["ack"]
    downstream = drain(LocalQueue(tmp_path / "q.db"), "next-step", 5)
    assert len(downstream) == 1
    assert Task.model_validate_json(downstream[0].data).parent == task.task_id


def test_flush_messages_acks_without_running(tmp_path: Path) -> None:
    q = LocalQueue(tmp_path / "q.db")
    q.setup("flushme", "flushme")
    q.publish(
        "flushme",
        [
            Outgoing(Task(project="common", workflow="write_file", args=[str(tmp_path / f"x{i}"), "no"]).encode())
            for i in range(5)
        ],
    )
    settings = WorkerSettings(
        queue=f"local://{tmp_path / 'q.db'}", subscription=["flushme"], idle_timeout=0.5, flush_messages=True
    )
    assert Worker(settings).run() == "idle"
    assert q.counts("flushme").backlog == 0
    assert not any(tmp_path.glob("x*"))


def test_storage_failure_gives_the_message_back_and_the_worker_lives(tmp_path: Path) -> None:
    """A job root that cannot be written (a file, not a folder): nack, redeliver, dead-letter by delivery limit."""
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    q = LocalQueue(tmp_path / "q.db")
    q.setup("infra", "infra", max_deliveries=3)
    bad = Task(project="common", workflow="noop", job_id="j", job_root=str(not_a_dir), partition="p", step="s")
    good = Task(project="common", workflow="write_file", args=[str(tmp_path / "good"), "ok"])
    q.publish("infra", [Outgoing(bad.encode()), Outgoing(good.encode())])
    settings = WorkerSettings(
        queue=f"local://{tmp_path / 'q.db'}",
        subscription=["infra"],
        idle_timeout=1,
        retries=100,
        retry_sleep=0,
        scratch_root=str(tmp_path / "scratch"),
        allow_diagnostics=True,  # the tasks are diagnostics
    )
    assert Worker(settings, queue=q).run() == "idle"
    assert (tmp_path / "good").read_text() == "ok"
    dead = drain(q, "infra-dead-letter", 5)
    assert [Task.model_validate_json(m.data).task_id for m in dead] == [bad.task_id]
