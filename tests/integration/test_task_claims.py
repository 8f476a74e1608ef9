"""Two deliveries of one task never run it at once on two workers; a dead holder's claim is taken over."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from rslp.jobroot import JobRoot
from rslp.queue import dead_letter_name
from rslp.task import Task
from rslp.testing.workers import epoch
from rslp.worker.task_claim import CLAIM_SECONDS
from tests.conftest import Backend, pull_until_canary
from tests.integration.workers import WorkerProc, publish_tasks, write_job

pytestmark = pytest.mark.slow  # each waits for a claim period or more, on both queues

#: How long the task holds its worker: long enough for the second worker to pull the duplicate meanwhile.
SPIN_SECONDS = 8.0


def _spin_task(tmp_path: Path, topic: str) -> tuple[Task, Path]:
    """A job task that spins SPIN_SECONDS, then appends ``spun N from START to END`` to a file."""
    job, runs = tmp_path / "job", tmp_path / "runs"
    write_job(job, "j", {"spin": topic})
    task = Task(
        project="common",
        workflow="spin",
        args=[str(SPIN_SECONDS), str(runs)],
        job_id="j",
        job_root=str(job),
        partition="p00000",
        step="spin",
    )
    return task, runs


def _runs(runs: Path) -> list[tuple[float, float]]:
    """(start, end) of each run the task's file records."""
    out = []
    for line in runs.read_text().splitlines():
        words = line.split()
        out.append((float(words[3]), float(words[5])))
    return out


def test_a_task_delivered_twice_runs_once_and_never_on_two_workers_at_once(
    backend: Backend, topic: str, tmp_path: Path
) -> None:
    """The task is published twice and two workers take one copy each at once: one runs it,
    the other hands its copy back for later (no attempt, no dead letter) and, once the first
    has marked it done, acks it as a duplicate. The task ran once; no run overlapped another."""
    q = backend.open()
    q.setup(topic, topic)
    task, runs = _spin_task(tmp_path, topic)
    workers = [WorkerProc(backend.url, topic, idle_timeout=CLAIM_SECONDS + 5) for _ in range(2)]
    try:
        for w in workers:
            w.wait_for("worker_started", timeout=60)  # both pulling: each takes one copy
        publish_tasks(q, topic, [task, task])
        deadline = time.monotonic() + 120
        while sum(w.count("skipped_done") for w in workers) < 1 and time.monotonic() < deadline:
            time.sleep(0.2)  # the duplicate comes back when the claim would go stale, then finds the done marker
        for w in workers:  # the work is done: stop them rather than wait out their idle timeouts
            w.signal(signal.SIGTERM)
        assert [w.wait(timeout=60) for w in workers] == [0, 0]
    finally:
        for w in workers:
            w.kill()
    assert len(_runs(runs)) == 1, _runs(runs)  # once in effect, so no run overlapped another
    events = [e for w in workers for e in w.events]
    assert sum(e["event"] == "started" for e in events) == 1
    # The second copy was delivered while the first ran, handed back, then skipped as done.
    (handed_back,) = [e for e in events if e["event"] == "claimed_elsewhere"]
    (done,) = [e for e in events if e["event"] == "done"]
    assert epoch(handed_back) < epoch(done)
    assert sum(e["event"] == "skipped_done" for e in events) == 1
    assert not any(e["event"] in ("retried", "dead_lettered", "dead_letter_held") for e in events)
    assert JobRoot(task.job_root or "").read(task, "done") is not None
    assert (
        not JobRoot(task.job_root or "").claim_path(task.step or "task", task.task_id).exists()
    )  # given up after the done marker
    assert pull_until_canary(q, topic, backend.min_lease) == []
    assert pull_until_canary(q, dead_letter_name(topic), backend.min_lease) == []


def test_the_claim_of_a_killed_worker_is_taken_over_within_its_stale_bound(
    backend: Backend, topic: str, tmp_path: Path
) -> None:
    """The worker running the task is SIGKILLed with its task process: its claim is left behind,
    unrefreshed. The redelivered message waits for it to go stale (handed back, never run beside
    a live holder), then another worker takes it over and runs the task, once."""
    q = backend.open()
    q.setup(topic, topic)
    task, runs = _spin_task(tmp_path, topic)
    claim = JobRoot(task.job_root or "").claim_path(task.step or "task", task.task_id)
    publish_tasks(q, topic, [task])
    victim = WorkerProc(backend.url, topic, new_session=True, lease_seconds=backend.min_lease, idle_timeout=60)
    heir = None
    try:
        victim.wait_for("started", timeout=60)
        assert claim.exists()
        victim.kill_group()
        last_sign_of_life = claim.stat().st_mtime
        heir = WorkerProc(backend.url, topic, lease_seconds=backend.min_lease, idle_timeout=60)
        taken = epoch(heir.wait_for("stale_claim_taken_over", timeout=60))
        started = epoch(heir.wait_for("started", timeout=10))
        heir.wait_for("done", timeout=SPIN_SECONDS + 30)
    finally:
        victim.kill()
        if heir is not None:
            heir.kill()
    # Never taken over while it was fresh; taken over within a few seconds of going stale
    # (the message's recheck is rounded up to whole seconds, and the emulator times it loosely).
    assert CLAIM_SECONDS <= taken - last_sign_of_life <= CLAIM_SECONDS + 6, taken - last_sign_of_life
    print(f"{backend.name}: claim taken over {taken - last_sign_of_life:.1f} s after its last refresh")
    assert started >= taken
    assert len(_runs(runs)) == 1  # the victim died mid-spin: only the heir's run finished
    assert JobRoot(task.job_root or "").read(task, "done") is not None


def test_a_preempted_workers_task_runs_again_at_once_on_a_free_worker(
    backend: Backend, topic: str, tmp_path: Path
) -> None:
    """SIGTERM mid-task: the worker hands the task back and gives its claim up (before the
    hand-back, so even a worker that pulls the task within milliseconds finds no claim): the
    free worker runs it at once, never waiting for the claim to go stale."""
    q = backend.open()
    q.setup(topic, topic)
    task, runs = _spin_task(tmp_path, topic)
    claim = JobRoot(task.job_root or "").claim_path(task.step or "task", task.task_id)
    publish_tasks(q, topic, [task])
    victim = WorkerProc(backend.url, topic, idle_timeout=60)
    standby = None
    try:
        victim.wait_for("started", timeout=60)
        standby = WorkerProc(backend.url, topic, idle_timeout=8)
        standby.wait_for("worker_started", timeout=60)
        victim.signal(signal.SIGTERM)
        assert victim.wait(timeout=30) == 0
        handed_back = epoch(victim.wait_for("preempted", timeout=1))
        started = epoch(standby.wait_for("started", timeout=60))
        assert standby.wait(timeout=SPIN_SECONDS + 30) == 0  # done, then idle: its claim given up after the marker
    finally:
        victim.kill()
        if standby is not None:
            standby.kill()
    assert started - handed_back < CLAIM_SECONDS / 2, started - handed_back
    assert standby.count("claimed_elsewhere") == 0
    assert len(_runs(runs)) == 1 and not claim.exists()
