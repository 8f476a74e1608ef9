"""Issue 25.3: what breaks while handling a message that names a job is that message's fault.

A done marker (written by whoever can write the job root) recorded a downstream task
for a topic that does not exist: every worker that pulled the message republished it,
met NOT_FOUND and exited 4, delivery after delivery (the embedded queue dropped that
downstream without a word, as if the topic had no subscription). A running-marker path made a
folder stopped a worker with exit 3 and no dead letter. Both now dead-letter the one
message with a one-line reason, and the worker goes on to the good task behind it.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

from rslp.errors import ExitCode
from rslp.jobroot import JobRoot
from rslp.pipeline.job import make_task
from rslp.queue.base import DEAD_LETTER_REASON
from rslp.task import Downstream, Task
from tests.conftest import Backend
from tests.integration.workers import WorkerProc, dead_letters, publish_tasks, write_job


def _job_task(root: Path, step: str) -> Task:
    return Task(project="common", workflow="noop", job_id="j", job_root=str(root), partition="p00000", step=step)


def _dead_letter_then_good(backend: Backend, topic: str, bad: Task, tmp_path: Path) -> str:
    """Send ``bad`` and a good task to one worker; the dead letter's reason (the worker must live on)."""
    q = backend.open()
    q.setup(topic, topic)
    good = Task(project="common", workflow="write_file", args=[str(tmp_path / "good"), "ok"])
    publish_tasks(q, topic, [bad, good])
    w = WorkerProc(backend.url, topic, idle_timeout=600, job_roots=str(tmp_path / "jobs"))
    try:
        w.wait_for("done", timeout=120, workflow="common/write_file")
        [dead] = dead_letters(q, topic, backend.min_lease, expect=1, timeout=60)
        assert w.proc.poll() is None, "the worker stopped"
    finally:
        w.signal(signal.SIGTERM)
        assert w.wait(timeout=30) == ExitCode.OK
    assert (tmp_path / "good").read_text() == "ok"
    assert dead.data == bad.encode()
    reason = dead.attributes[DEAD_LETTER_REASON]
    assert "\n" not in reason and len(reason) <= 1000
    return reason


def test_a_recorded_downstream_for_a_missing_topic_dead_letters_its_message(
    backend: Backend, topic: str, tmp_path: Path
) -> None:
    root = tmp_path / "jobs" / "j"
    missing = f"{topic}-never-created"
    write_job(root, "j", {"write": topic, "next": missing})
    task = _job_task(root, "write")
    recorded = Downstream(topic=missing, task=make_task("j", str(root), "next", "p00000"))
    JobRoot(root).mark(task, "done", downstream=[recorded.model_dump(mode="json")])
    reason = _dead_letter_then_good(backend, topic, task, tmp_path)
    assert "cannot publish task" in reason and f"no topic {missing!r}" in reason


def test_a_running_marker_path_that_is_a_folder_dead_letters_its_message(
    backend: Backend, topic: str, tmp_path: Path
) -> None:
    root = tmp_path / "jobs" / "j"
    write_job(root, "j", {"write": topic})
    task = _job_task(root, "write")
    Path(JobRoot(root).marker_path("write", task.task_id, "running").path).mkdir(parents=True)
    reason = _dead_letter_then_good(backend, topic, task, tmp_path)
    assert "cannot write marker" in reason and "running.json" in reason
    assert json.loads(Path(JobRoot(root).marker_path("write", task.task_id, "dead").path).read_text())["kind"] == (
        "job_root"
    )
