"""A message is data: hostile messages ahead of a good one, to one real worker.

Each row is something a sender (or an unlucky user) can put on a topic. Afterwards the
worker is still running, each hostile message is dead-lettered with a short reason,
nothing outside the job roots and the scratch root was written or deleted, no other
job's marker changed, nothing went to another fleet's topic, and the good task ran.
The worker runs with ``--retries 1``: had any of these counted as a failure, it would
have stopped.
"""

from __future__ import annotations

import hashlib
import json
import signal
from pathlib import Path

from rslp.ledger import Ledger
from rslp.pipeline.job import make_task
from rslp.queue import Outgoing
from rslp.queue.base import DEAD_LETTER_REASON
from rslp.task import Downstream, Task
from tests.conftest import Backend
from tests.integration.workers import WorkerProc, dead_letters, write_job


def _message(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def _hostile(world: Path, topic: str, other_fleet: str) -> dict[str, bytes]:
    """Name -> message body. ``world/jobs/mine`` is a job; ``world/jobs/other`` another job with real markers."""
    mine, other = world / "jobs" / "mine", world / "jobs" / "other"
    noop = {"project": "common", "workflow": "noop"}
    job = {"job_id": "mine", "job_root": str(mine)}
    bad_marker = Task(project="common", workflow="noop", **job, partition="p-bad-marker", step="write")
    forwarder = Task(project="common", workflow="noop", **job, partition="p-forward", step="write")
    marker_other_job = Task(project="common", workflow="noop", **job, partition="p-other-job", step="write")
    return {
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
        "done marker that does not parse": bad_marker.encode(),
        "done marker forwarding to another fleet": forwarder.encode(),
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
        "done marker forwarding into another job": marker_other_job.encode(),
    }


def _snapshot(root: Path, skip: tuple[Path, ...]) -> dict[str, str]:
    """Every file and folder under ``root`` (outside ``skip``) with a hash of its content."""
    out = {}
    for path in sorted(root.rglob("*")):
        if any(path == s or s in path.parents for s in skip):
            continue
        out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return out


def test_hostile_messages_are_dead_lettered_and_the_worker_lives(backend: Backend, topic: str, tmp_path: Path) -> None:
    world = tmp_path / "world"
    mine, other, scratch = world / "jobs" / "mine", world / "jobs" / "other", world / "scratch"
    other_fleet = f"{topic}-other-fleet"
    write_job(mine, "mine", {"write": topic})
    write_job(other, "other", {"predict": other_fleet})
    # Another job's real state: a running predict task, which must stay exactly as it is.
    Ledger(other).mark(make_task("other", str(other), "predict", "p1"), "running", worker="elsewhere")
    (world / "victim").mkdir(parents=True)
    (world / "victim" / "keep.txt").write_text("scratch_root/../victim")
    (world / "outside" / "dir").mkdir(parents=True)
    (world / "outside" / "dir" / "keep.txt").write_text("an absolute task id")
    messages = _hostile(world, topic, other_fleet)
    # Markers a job root holds that a worker must not trust: garbage, and a downstream for another fleet.
    ledger = Ledger(mine)
    for name, payload in (
        ("done marker that does not parse", "{not json"),
        (
            "done marker forwarding to another fleet",
            json.dumps(
                {
                    "downstream": [
                        Downstream(
                            topic=other_fleet,
                            task=Task(project="common", workflow="write_file", args=[str(world / "pwned"), "x"]),
                        ).model_dump(mode="json")
                    ]
                }
            ),
        ),
        (
            "done marker forwarding into another job",
            json.dumps(
                {
                    "downstream": [
                        Downstream(topic=topic, task=make_task("other", str(other), "predict", "p1")).model_dump(
                            mode="json"
                        )
                    ]
                }
            ),
        ),
    ):
        task = Task.model_validate_json(messages[name])
        path = Path(ledger.marker_path("write", task.task_id, "done").path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(payload)
    before = _snapshot(world, (mine, scratch))

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
        job_roots=str(world / "jobs"),
    )
    try:
        w.wait_for("done", timeout=240, workflow="common/write_file")
        assert w.proc.poll() is None, "the worker stopped"
        dead = dead_letters(q, topic, backend.min_lease, expect=len(messages), timeout=60, batch=1)
    finally:
        w.signal(signal.SIGTERM)
        assert w.wait(timeout=30) == 0
    assert (mine / "good.txt").read_text() == "ok"
    assert w.count("too_many_failures") == 0 and w.count("handle_failed") == 0

    reasons = {m.data: m.attributes[DEAD_LETTER_REASON] for m in dead}
    missing = [name for name, data in messages.items() if data not in reasons]
    assert not missing, f"not dead-lettered: {missing}"
    assert len(dead) == len(messages), "a message was dead-lettered twice, or the good one was"
    for name, data in messages.items():
        reason = reasons[data]
        assert reason and len(reason.encode()) <= 1024, (name, len(reason))
        assert "\n" not in reason, name
    assert "runs only from the command line" in reasons[messages["the worker command"]]
    assert "10000 unknown fields" in reasons[messages["3 MB of unknown fields"]]

    assert _snapshot(world, (mine, scratch)) == before, "something outside the job root and scratch changed"
    assert not (world / "pwned").exists()
    assert Ledger(other).states("predict") == {make_task("other", str(other), "predict", "p1").task_id: "running"}
    assert q.pull(other_fleet, backend.min_lease, max_messages=10) == []
