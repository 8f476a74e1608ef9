"""Issue 25.1: five messages that ran a shell command in a worker, and the job-root writer's version of it.

Four ``common/write_file`` messages laid out a job root under the worker's own job-root
prefix (a header, a pipeline.yaml that trusted its checkpoint, the demo's model.yaml and
a 60-byte protocol-0 pickle as the checkpoint); the fifth was that job's
``pipeline/predict`` task, and predict unpickled the file. (Here a fifth write lays out the
demo's dataset.json too, which a job's tasks now read.) Both links must hold alone:
a plain ``rslp worker`` runs no file-writing diagnostic from a message, and no file in
a job root can make a worker unpickle a checkpoint.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from rslp.pipeline.job import make_task
from rslp.queue.base import DEAD_LETTER_REASON
from rslp.task import Task
from tests.conftest import PROJECT, Backend
from tests.integration.workers import WorkerProc, attack_files, dead_letters, publish_tasks


def _predict(root: Path) -> Task:
    return make_task(root.name, str(root), "predict", "p00000")


def test_five_messages_on_pubsub_run_no_code(emulator_host: str, topic: str, tmp_path: Path) -> None:
    backend = Backend("pubsub", f"pubsub://{PROJECT}", 10)
    q = backend.open()
    q.setup(topic, topic)
    root, proof = tmp_path / "jobs" / "pwn", tmp_path / "pwned"
    root.mkdir(parents=True)  # an empty folder under the worker's job roots (write_file makes no folders)
    files = attack_files(root, topic, proof, self_trust=True)
    writes = [Task(project="common", workflow="write_file", args=[str(p), text]) for p, text in files.items()]
    good, predict = Task(project="common", workflow="noop"), _predict(root)
    publish_tasks(q, topic, [*writes, predict, good])

    # A plain `rslp worker`: the diagnostics are refused, so no job root appears and predict finds none.
    plain = WorkerProc(backend.url, topic, idle_timeout=600, job_roots=str(tmp_path / "jobs"), allow_diagnostics=False)
    try:
        plain.wait_for("done", timeout=120, workflow="common/noop")
        dead = dead_letters(q, topic, backend.min_lease, expect=len(writes) + 1, timeout=60)
        assert plain.proc.poll() is None, "the worker stopped"
    finally:
        plain.signal(signal.SIGTERM)
        assert plain.wait(timeout=30) == 0
    reasons = {m.data: m.attributes[DEAD_LETTER_REASON] for m in dead}
    assert len(dead) == len(writes) + 1
    for write in writes:
        assert "only if its operator starts it with --allow_diagnostics" in reasons[write.encode()]
    assert "no job manifest" in reasons[predict.encode()]
    assert not any(root.iterdir()) and not proof.exists()

    # An operator who allows diagnostics (the ancestor's trust in its topic): the files are written,
    # and still the checkpoint is never unpickled, because the config cannot trust it.
    publish_tasks(q, topic, writes)
    trusting = WorkerProc(backend.url, topic, idle_timeout=600, job_roots=str(tmp_path / "jobs"))
    try:
        deadline = time.monotonic() + 60
        while trusting.count("done") < len(writes):  # the job root is laid out before predict is sent
            assert time.monotonic() < deadline, trusting.events[-5:]
            time.sleep(0.1)
        publish_tasks(q, topic, [predict, good])
        trusting.wait_for("done", timeout=120, workflow="common/noop")
        [dead_predict] = dead_letters(q, topic, backend.min_lease, expect=1, timeout=60)
        assert trusting.proc.poll() is None, "the worker stopped"
    finally:
        trusting.signal(signal.SIGTERM)
        assert trusting.wait(timeout=30) == 0
    assert all(p.exists() for p in files)
    assert "trust_checkpoint is not read from a config" in dead_predict.attributes[DEAD_LETTER_REASON]
    assert not proof.exists()


def test_a_job_root_writers_checkpoint_is_never_unpickled(tmp_path: Path, topic: str) -> None:
    """A job whose config trusts its own checkpoint is refused; without that field, the checkpoint loads as weights."""
    backend = Backend("local", f"local://{tmp_path / 'q.db'}", 2)
    q = backend.open()
    q.setup(topic, topic)
    proof = tmp_path / "pwned"
    tasks = []
    for name, self_trust in (("trusting", True), ("plain", False)):
        root = tmp_path / "jobs" / name
        root.mkdir(parents=True)
        for path, text in attack_files(root, topic, proof, self_trust).items():
            path.write_text(text)
        tasks.append(_predict(root))
    publish_tasks(q, topic, [*tasks, Task(project="common", workflow="noop")])
    w = WorkerProc(backend.url, topic, idle_timeout=600, job_roots=str(tmp_path / "jobs"), allow_diagnostics=False)
    try:
        w.wait_for("done", timeout=180, workflow="common/noop")
        dead = dead_letters(q, topic, backend.min_lease, expect=2, timeout=60)
        assert w.proc.poll() is None, "the worker stopped"
    finally:
        w.signal(signal.SIGTERM)
        assert w.wait(timeout=30) == 0
    reasons = {m.data: m.attributes[DEAD_LETTER_REASON] for m in dead}
    assert "trust_checkpoint is not read from a config" in reasons[tasks[0].encode()]
    assert "holds more than weights and was not loaded (unsupported GLOBAL posix.system" in reasons[tasks[1].encode()]
    assert not proof.exists()
