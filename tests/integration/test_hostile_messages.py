"""A message is data: hostile messages ahead of a good one, to one real worker.

Each row is something a sender (or an unlucky user), or whoever can write a job root,
can put before a worker. Afterwards the worker is still running, each hostile message
is dead-lettered with a short reason, nothing outside the job roots the messages name
and the scratch root was written or deleted, no other job's marker changed, nothing
went to another fleet's topic, no checkpoint ran code, and the good task ran. The
worker allows the diagnostics (so every other check is exercised; refusing them is
tests/integration/test_chained_attack.py) and runs with ``--retries 1``: after every
failed task it checks its own health, and still it never stops.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path

import pytest

from rslp.jobroot import JobRoot
from rslp.pipeline.job import make_task
from rslp.queue import Outgoing
from rslp.queue.base import DEAD_LETTER_REASON
from rslp.task import Downstream, Task
from tests.conftest import Backend
from tests.integration.workers import WorkerProc, attack_files, dead_letters, write_job


def _message(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def _mine(world: Path, partition: str) -> Task:
    """A noop task of step ``write`` of job ``mine`` (each row its own partition, so its own markers)."""
    root = str(world / "jobs" / "mine")
    return Task(project="common", workflow="noop", job_id="mine", job_root=root, partition=partition, step="write")


def _forged_markers(world: Path, topic: str, other_fleet: str) -> dict[str, tuple[Task, str]]:
    """Rows that are tasks of job ``mine``, and the done marker a job-root writer left for each."""
    mine, other = str(world / "jobs" / "mine"), world / "jobs" / "other"
    jobless_write = Task(project="common", workflow="write_file", args=[str(world / "pwned"), "x"])

    def records(topic: str, task: Task | dict[str, object]) -> str:
        body = task.model_dump(mode="json") if isinstance(task, Task) else task
        return json.dumps({"downstream": [{"topic": topic, "task": body}]})

    return {
        "done marker that does not parse": (_mine(world, "p00001"), "{not json"),
        "done marker forwarding to another fleet": (_mine(world, "p00002"), records(other_fleet, jobless_write)),
        "done marker forwarding into another job": (
            _mine(world, "p00003"),
            records(topic, make_task("other", str(other), "predict", "p00001")),
        ),
        "a pipeline task's done marker recording a jobless write_file": (
            make_task("mine", mine, "create_windows", "p00004"),
            records(topic, jobless_write),
        ),
        "done marker recording a topic that is not a topic id": (
            _mine(world, "p00005"),
            records("goog-reserved", make_task("mine", mine, "write", "p00006")),
        ),
        "a done marker over the size cap": (_mine(world, "p00007"), json.dumps({"downstream": [], "pad": "x" * 2**21})),
    }


def _hostile(world: Path, topic: str, other_fleet: str) -> dict[str, bytes]:
    """Name -> message body. ``world/jobs/mine`` is a job; ``world/jobs/other`` another job with real markers."""
    jobs = world / "jobs"
    mine, other = jobs / "mine", jobs / "other"
    noop = {"project": "common", "workflow": "noop"}
    job = {"job_id": "mine", "job_root": str(mine)}
    forged = {name: task.encode() for name, (task, _) in _forged_markers(world, topic, other_fleet).items()}

    def on(root: str) -> bytes:
        return Task(
            project="common", workflow="noop", job_id=root, job_root=str(jobs / root), partition="p00000", step="write"
        ).encode()

    return {
        **forged,
        "a done marker recording a topic that does not exist": _mine(world, "p00010").encode(),
        # Issue 25.1: a job-root writer's job whose predict would unpickle a checkpoint that runs code.
        "predict of a job whose pipeline.yaml trusts its own checkpoint": make_task(
            "pwn-trusting", str(jobs / "pwn-trusting"), "predict", "p00000"
        ).encode(),
        "predict of a job whose checkpoint runs code": make_task(
            "pwn-plain", str(jobs / "pwn-plain"), "predict", "p00000"
        ).encode(),
        # Issue 25.2: failing tasks (retried, dead-lettered, never a step toward the worker's exit).
        **{f"common/fail {i}": _message(project="common", workflow="fail", args=[f"boom {i}"]) for i in range(3)},
        # Issue 25.3: a running-marker path made a folder.
        "running marker path is a folder": _mine(world, "p00008").encode(),
        # Issue 25.4: job-root files that are not regular files, or lead out of the root.
        "a FIFO as the manifest": on("fifo"),
        "a manifest symlinked to /dev/zero": on("zero"),
        "a markers symlink out of the root": on("linked"),
        "a running marker symlinked out of the root": _mine(world, "p00009").encode(),
        # Issue 25.5: partitions the job does not have.
        "a partition that is not one of the job's": _mine(world, "zz0").encode(),
        "a partition past the job's count": _mine(world, "p00999").encode(),
        "a pipeline task past the job's count": make_task("mine", str(mine), "create_windows", "p00999").encode(),
        "a per-job partition for a per-partition step": _mine(world, "job").encode(),
        "scratch rmtree via ../": _message(**noop, task_id="../victim"),
        "scratch rmtree via absolute path": _message(**noop, task_id=str(world / "outside" / "dir")),
        "marker outside the job root": _message(**noop, **job, partition="p", step="../../outside"),
        "another job's predict marker via noop": Task(
            project="common", workflow="noop", job_id="other", job_root=str(other), partition="p1", step="predict"
        ).encode(),
        "a job task with a forged task id": _message(
            **noop, **job, partition="p", step="write", task_id=make_task("other", str(other), "predict", "p1").task_id
        ),
        "a job id that is not the job at its root": _message(
            **noop, job_id="other", job_root=str(mine), partition="p", step="write"
        ),
        "a step the job does not have": _message(**noop, **job, partition="p", step="ingest"),
        "pipeline task pointed at another root": make_task("mine", str(mine), "create_windows", "p")
        .model_copy(update={"args": ["--job_root", str(other), "--partition", "p1"]})
        .encode(),
        "not_before without a timezone": _message(**noop, not_before="2030-01-01T00:00:00"),
        "not_before far in the future": _message(**noop, not_before="2999-01-01T00:00:00Z"),
        "deeply nested JSON": b'{"project": "common", "workflow": "noop", "args": '
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}",
        "job root with an unknown protocol": _message(
            **noop, job_id="j", job_root="nosuchproto://x/y", partition="p", step="write"
        ),
        "job root over http": _message(
            **noop, job_id="j", job_root="http://127.0.0.1:9/job", partition="p", step="write"
        ),
        "unreachable job root": _message(
            **noop, job_id="j", job_root=str(world / "jobs" / "missing"), partition="p", step="write"
        ),
        "job root outside the worker's prefixes": _message(
            **noop, job_id="j", job_root=str(world / "outside"), partition="p", step="write"
        ),
        "the worker command": _message(project="common", workflow="worker", args=["--subscription", topic]),
        "the launch command": _message(project="common", workflow="launch", args=[]),
        "write_jobs": _message(project="pipeline", workflow="write_jobs", args=[]),
        # 3 MB, not 4: the emulator's client channel keeps gRPC's 4 MiB receive limit (production's has none).
        "3 MB of unknown fields": _message(**noop, **{f"field{i}": "x" * 300 for i in range(10_000)}),
        "3 MB of args for a bad call": _message(project="common", workflow="write_file", args=["x" * 3_000_000]),
        "unknown workflow with a long name": _message(project="common", workflow="w" * 5000),
        "not JSON": b"\xff\xfe not json",
        "a JSON array": b"[1, 2, 3]",
        "a job_id that is a number": _message(**noop, job_id=5, partition="p", step="write"),
        "parent with a path": _message(**noop, parent="../../etc"),
        "terminal escapes in the workflow name": _message(project="common", workflow="\x1b]52;c;cHduZWQ=\x07"),
        "a schema from the future": _message(**noop, schema_version=99),
        "chain to another fleet's topic": _message(
            project="common", workflow="chain", args=[str(mine / "chained"), other_fleet, str(world / "pwned")]
        ),
    }


def _snapshot(root: Path, skip: tuple[Path, ...]) -> dict[str, str]:
    """Every file and folder under ``root`` (outside ``skip``) with a hash of its content."""
    out = {}
    for path in sorted(root.rglob("*")):
        if any(path == s or s in path.parents for s in skip):
            continue
        out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return out


def _job_root_writer(world: Path, topic: str, other_fleet: str) -> None:
    """What whoever can write the job roots under ``world/jobs`` left there for the worker."""
    jobs = world / "jobs"
    mine = str(jobs / "mine")
    ledger = JobRoot(mine)
    for task, payload in _forged_markers(world, topic, other_fleet).values():
        path = Path(ledger.marker_path(task.step or "", task.task_id, "done").path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(payload)
    missing = _mine(world, "p00010")
    recorded = Downstream(topic=f"{topic}-missing", task=make_task("mine", mine, "create_windows", "p00011"))
    ledger.mark(missing, "done", downstream=[recorded.model_dump(mode="json")])
    Path(ledger.marker_path("write", _mine(world, "p00008").task_id, "running").path).mkdir(parents=True)
    (world / "outside-markers").mkdir()
    running = Path(ledger.marker_path("write", _mine(world, "p00009").task_id, "running").path)
    running.symlink_to(world / "outside-markers" / "running.json")
    for name, self_trust in (("pwn-trusting", True), ("pwn-plain", False)):
        (jobs / name).mkdir()
        for path, text in attack_files(jobs / name, topic, world / "pwned", self_trust).items():
            path.write_text(text)
    for name in ("fifo", "zero", "linked"):
        write_job(jobs / name, name, {"write": topic})
    (jobs / "fifo" / "manifest.json").unlink()
    os.mkfifo(jobs / "fifo" / "manifest.json")
    (jobs / "zero" / "manifest.json").unlink()
    (jobs / "zero" / "manifest.json").symlink_to("/dev/zero")
    (jobs / "linked" / "markers").symlink_to(world / "outside-markers")


@pytest.mark.timeout(600)
def test_hostile_messages_are_dead_lettered_and_the_worker_lives(backend: Backend, topic: str, tmp_path: Path) -> None:
    world = tmp_path / "world"
    jobs = world / "jobs"
    mine, other, scratch = jobs / "mine", jobs / "other", world / "scratch"
    other_fleet = f"{topic}-other-fleet"
    write_job(mine, "mine", {"write": topic, "create_windows": topic, f"{topic}-gone": f"{topic}-missing"}, 20)
    write_job(other, "other", {"predict": other_fleet}, 2)
    # Another job's real state: a running predict task, which must stay exactly as it is.
    JobRoot(other).mark(make_task("other", str(other), "predict", "p00001"), "running", worker="elsewhere")
    (world / "victim").mkdir(parents=True)
    (world / "victim" / "keep.txt").write_text("scratch_root/../victim")
    (world / "outside" / "dir").mkdir(parents=True)
    (world / "outside" / "dir" / "keep.txt").write_text("an absolute task id")
    messages = _hostile(world, topic, other_fleet)
    _job_root_writer(world, topic, other_fleet)
    named = tuple(jobs / name for name in ("mine", "pwn-trusting", "pwn-plain", "fifo", "zero", "linked"))
    before = _snapshot(world, (*named, scratch))

    q = backend.open()
    q.setup(topic, topic)
    q.setup(other_fleet, other_fleet)
    good = Task(project="common", workflow="write_file", args=[str(mine / "good.txt"), "ok"])
    for data in [*messages.values(), good.encode()]:  # one at a time: a publish request holds at most 10 MB
        q.publish(topic, [Outgoing(data)])
    w = WorkerProc(
        backend.url,
        topic,
        idle_timeout=600,
        retries=1,
        max_attempts=1,
        scratch_root=str(scratch),
        job_roots=str(jobs),
    )
    try:
        w.wait_for("done", timeout=300, workflow="common/write_file")
        dead = dead_letters(q, topic, backend.min_lease, expect=len(messages), timeout=120, batch=1)
        assert w.proc.poll() is None, "the worker stopped"
    finally:
        w.signal(signal.SIGTERM)
        assert w.wait(timeout=30) == 0
    assert (mine / "good.txt").read_text() == "ok"
    assert w.count("too_many_failures") == 0 and w.count("handle_failed") == 0 and w.count("worker_unwell") == 0
    assert w.count("failures_not_the_workers") >= 3  # the three fail messages: checked, and not the worker's

    reasons = {m.data: m.attributes[DEAD_LETTER_REASON] for m in dead}
    missing = [name for name, data in messages.items() if data not in reasons]
    assert not missing, f"not dead-lettered: {missing}"
    assert len(dead) == len(messages), "a message was dead-lettered twice, or the good one was"
    for name, data in messages.items():
        reason = reasons[data]
        assert reason and len(reason.encode()) <= 1024, (name, len(reason))
        assert "\n" not in reason, name
    expected = {
        "the worker command": "runs only from the command line",
        "3 MB of unknown fields": "10000 unknown fields",
        "predict of a job whose pipeline.yaml trusts its own checkpoint": "trust_checkpoint is not read from a config",
        "predict of a job whose checkpoint runs code": "holds more than weights and was not loaded",
        "common/fail 0": "RuntimeError: boom 0",
        "running marker path is a folder": "cannot write marker",
        "a FIFO as the manifest": "not a regular file (a FIFO)",
        "a manifest symlinked to /dev/zero": "through a symlink",
        "a markers symlink out of the root": "does not parse (PathEscapeError)",
        "a running marker symlinked out of the root": "through a symlink",
        "a partition that is not one of the job's": "'zz0' is not a partition id",
        "a partition past the job's count": "has no partition 'p00999' (it has 20)",
        "a pipeline task past the job's count": "has no partition 'p00999'",
        "a pipeline task's done marker recording a jobless write_file": "a pipeline task of job mine",
        "done marker recording a topic that is not a topic id": "does not parse",
        "a done marker over the size cap": "does not parse (JobRootError)",
        "a done marker recording a topic that does not exist": "cannot publish task",
    }
    for name, fragment in expected.items():
        if name in messages:
            assert fragment in reasons[messages[name]], (name, reasons[messages[name]])

    assert _snapshot(world, (*named, scratch)) == before, "something outside the named job roots and scratch changed"
    assert not (world / "pwned").exists()
    assert list((world / "outside-markers").iterdir()) == []
    assert JobRoot(other).states("predict") == {make_task("other", str(other), "predict", "p00001").task_id: "running"}
    assert q.pull(other_fleet, backend.min_lease, max_messages=10) == []
