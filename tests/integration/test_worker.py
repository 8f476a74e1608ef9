"""The worker's invariants, each proven with real worker processes on both queue backends."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from rslp.errors import ExitCode
from rslp.jobroot import JobRoot
from rslp.queue import Outgoing, dead_letter_name
from rslp.queue.base import DEAD_LETTER_REASON
from rslp.task import Task
from tests.conftest import PROJECT, Backend, pull_until, pull_until_canary
from tests.integration.workers import WorkerProc, dead_letters, publish_tasks, write_job


def _lease(backend: Backend) -> float:
    return backend.min_lease


def test_single_write_file_task(backend: Backend, topic: str, tmp_path: Path) -> None:
    """The ancestor's scenario: one write_file message in the ancestor's bare format."""
    q = backend.open()
    q.setup(topic, topic)
    out = tmp_path / "out.txt"
    q.publish(
        topic, [Outgoing(f'{{"project": "common", "workflow": "write_file", "args": ["{out}", "abc"]}}'.encode())]
    )
    w = WorkerProc(backend.url, topic, idle_timeout=3)
    assert w.wait() == 0
    assert out.read_text() == "abc"
    assert w.count("done") == 1


def test_ancestor_worker_command_on_pubsub(emulator_host: str, topic: str, tmp_path: Path) -> None:
    """`python -m rslp.main common worker --project_id P --subscription_id S` runs against the emulator."""
    import subprocess

    backend = Backend("pubsub", f"pubsub://{PROJECT}", 10)
    q = backend.open()
    q.setup(topic, topic)
    out = tmp_path / "ancestor.txt"
    publish_tasks(q, topic, [Task(project="common", workflow="write_file", args=[str(out), "xyz"])])
    cmd = [
        sys.executable,
        "-m",
        "rslp.main",
        "common",
        "worker",
        "--project_id",
        PROJECT,
        "--subscription_id",
        topic,
        "--idle_timeout",
        "2",
    ]
    subprocess.run(cmd, check=True, timeout=60, capture_output=True, env={**os.environ, "WANDB_MODE": "disabled"})
    assert out.read_text() == "xyz"


def test_idle_timeout_exits_within_1x_to_3x(backend: Backend, topic: str) -> None:
    from datetime import datetime

    idle = 2.0
    backend.open().setup(topic, topic)
    w = WorkerProc(backend.url, topic, idle_timeout=idle)
    assert w.wait() == 0
    started = datetime.fromisoformat(w.wait_for("worker_started")["timestamp"])
    exited = datetime.fromisoformat(w.wait_for("idle_exit")["timestamp"])
    assert idle <= (exited - started).total_seconds() <= 3 * idle


def _chain_task(tmp_path: Path, topic: str) -> tuple[Task, Path, Path]:
    """A job task that writes ``first`` and asks for a downstream write_file of ``second`` on ``topic``."""
    first, second = tmp_path / "first", tmp_path / "second"
    write_job(tmp_path / "job", "j", {"chain": topic})
    task = Task(
        project="common",
        workflow="chain",
        args=[str(first), topic, str(second)],
        job_id="j",
        job_root=str(tmp_path / "job"),
        partition="p00000",
        step="chain",
    )
    return task, first, second


def test_chained_task_is_published_after_done_marker(backend: Backend, topic: str, tmp_path: Path) -> None:
    q = backend.open()
    q.setup(topic, topic)
    task, first, second = _chain_task(tmp_path, topic)
    publish_tasks(q, topic, [task])
    w = WorkerProc(backend.url, topic, idle_timeout=3)
    assert w.wait() == 0
    assert first.exists() and second.read_text() == "chained"
    marker = JobRoot(tmp_path / "job").read(task, "done")
    assert marker is not None and marker["downstream"][0]["task"]["workflow"] == "write_file"
    done = [e for e in w.events if e.get("event") == "done"]
    assert len(done) == 2


def test_redelivered_done_task_is_skipped_but_republishes_downstream(
    backend: Backend, topic: str, tmp_path: Path
) -> None:
    q = backend.open()
    q.setup(topic, topic)
    task, _first, second = _chain_task(tmp_path, topic)
    publish_tasks(q, topic, [task, task])  # a duplicate, as Pub/Sub may deliver
    w = WorkerProc(backend.url, topic, idle_timeout=3)
    assert w.wait() == 0
    assert w.count("skipped_done") >= 1
    # The downstream write_file was published twice (once per copy) and is itself idempotent.
    assert second.read_text() == "chained"
    assert sum(e.get("workflow") == "common/chain" and e.get("event") == "started" for e in w.events) == 1


def test_poison_messages_are_dead_lettered_and_the_rest_complete(backend: Backend, topic: str, tmp_path: Path) -> None:
    q = backend.open()
    q.setup(topic, topic)
    good = [tmp_path / f"good{i}" for i in range(4)]
    q.publish(
        topic,
        [
            Outgoing(b"this is not json"),
            Outgoing(b'{"project": "common", "workflow": "format_disk", "args": []}'),
            Outgoing(Task(project="common", workflow="write_file", args=["only-one-arg"]).encode()),
            Outgoing(Task(project="common", workflow="fail", args=["always broken"]).encode()),
            Outgoing(Task(project="common", workflow="crash").encode()),
        ],
    )
    publish_tasks(q, topic, [Task(project="common", workflow="write_file", args=[str(p), "ok"]) for p in good])
    w = WorkerProc(backend.url, topic, idle_timeout=4, max_attempts=2, retries=100)
    assert w.wait(timeout=120) == 0
    assert all(p.read_text() == "ok" for p in good)
    dead = dead_letters(q, topic, _lease(backend), expect=5)
    reasons = sorted(m.attributes[DEAD_LETTER_REASON] for m in dead)
    assert len(reasons) == 5, reasons
    joined = "\n".join(reasons)
    assert "not JSON" in joined
    assert "unknown workflow 'format_disk'" in joined
    assert "bad args" in joined
    assert "RuntimeError: always broken" in joined
    assert "task process died (killed by SIGKILL)" in joined
    kinds = sorted(m.attributes["rslp_kind"] for m in dead)
    assert kinds == ["crashed", "error", "malformed", "permanent", "unknown_workflow"]
    assert all("\n" not in r for r in reasons)


def test_failing_task_retried_then_dead_lettered_with_attempts(backend: Backend, topic: str, tmp_path: Path) -> None:
    q = backend.open()
    q.setup(topic, topic)
    write_job(tmp_path / "job", "j", {"fail": topic})
    task = Task(
        project="common",
        workflow="fail",
        args=["boom"],
        job_id="j",
        job_root=str(tmp_path / "job"),
        partition="p00000",
        step="fail",
    )
    publish_tasks(q, topic, [task])
    w = WorkerProc(backend.url, topic, idle_timeout=4, max_attempts=3, retries=100, retry_sleep=0.2)
    assert w.wait(timeout=120) == 0
    assert w.count("retried") == 2
    dead = dead_letters(q, topic, _lease(backend), expect=1)
    assert dead[0].attributes["rslp_attempts"] == "3"
    assert "RuntimeError: boom" in dead[0].attributes["rslp_traceback"]
    assert JobRoot(tmp_path / "job").states("fail") == {task.task_id: "dead"}


def test_consecutive_failures_stop_the_worker_and_success_resets(tmp_path: Path, topic: str) -> None:
    """The ancestor's --retries contract, which its `common worker` keeps (--exit_on_failures)."""
    backend = Backend("local", f"local://{tmp_path / 'q.db'}", 2)
    q = backend.open()
    q.setup(topic, topic)
    fails = [Task(project="common", workflow="fail", args=[f"f{i}"]) for i in range(3)]
    ok = Task(project="common", workflow="noop")
    publish_tasks(q, topic, [fails[0], ok, fails[1], fails[2]])
    w = WorkerProc(backend.url, topic, idle_timeout=10, retries=2, max_attempts=1, exit_on_failures=True)
    assert w.wait(timeout=60) == ExitCode.TOO_MANY_FAILURES
    w.wait_for("too_many_failures")
    assert w.count("done") == 1 and w.count("dead_lettered") == 3


def test_failing_messages_never_stop_a_worker_and_a_good_task_behind_them_runs(
    backend: Backend, topic: str, tmp_path: Path
) -> None:
    """Issue 25.2: three `common/fail` messages stopped `rslp worker` (exit 3) with the default flags."""
    q = backend.open()
    q.setup(topic, topic)
    fails = [Task(project="common", workflow="fail", args=[f"f{i}"]) for i in range(3)]
    good = Task(project="common", workflow="write_file", args=[str(tmp_path / "good"), "ok"])
    publish_tasks(q, topic, [*fails, good])
    w = WorkerProc(backend.url, topic, idle_timeout=600)
    try:
        w.wait_for("done", timeout=120, workflow="common/write_file")
        dead = dead_letters(q, topic, _lease(backend), expect=3, timeout=120)
        assert w.proc.poll() is None, "the worker stopped"
    finally:
        w.signal(signal.SIGTERM)
        assert w.wait(timeout=30) == ExitCode.OK
    assert (tmp_path / "good").read_text() == "ok"
    assert {Task.model_validate_json(m.data).task_id for m in dead} == {t.task_id for t in fails}
    assert w.count("failures_not_the_workers") >= 1 and w.count("worker_unwell") == 0


def test_a_worker_that_cannot_use_its_scratch_stops_unwell_and_hands_its_tasks_back(tmp_path: Path, topic: str) -> None:
    """A worker's own ill health (here: its scratch root is a file) stops it; the tasks are not dead-lettered."""
    backend = Backend("local", f"local://{tmp_path / 'q.db'}", 2)
    q = backend.open()
    q.setup(topic, topic)
    (tmp_path / "scratch").write_text("a file where the scratch root belongs")
    tasks = [Task(project="common", workflow="noop", task_id=f"canary{i}") for i in range(2)]
    publish_tasks(q, topic, tasks)
    w = WorkerProc(backend.url, topic, idle_timeout=60, retries=2, scratch_root=str(tmp_path / "scratch"))
    assert w.wait(timeout=60) == ExitCode.TOO_MANY_FAILURES
    assert "cannot use its scratch root" in w.wait_for("worker_unwell")["problem"]
    assert dead_letters(q, topic, _lease(backend), expect=1, timeout=1) == []
    left = pull_until_canary(q, topic, _lease(backend))
    assert {Task.model_validate_json(m.data).task_id for m in left} == {"canary0", "canary1"}


def test_sigterm_hands_task_back_at_once_and_exits(backend: Backend, topic: str, tmp_path: Path) -> None:
    q = backend.open()
    q.setup(topic, topic)
    task = Task(project="common", workflow="sleep", args=["60", str(tmp_path / "slept")])
    publish_tasks(q, topic, [task])
    # A lease far longer than the wait below: a task seen again within it was handed
    # back, not redelivered after its lease ran out (speed is measured in bench/).
    w = WorkerProc(backend.url, topic, lease_seconds=300)
    w.wait_for("started", timeout=30)
    w.signal(signal.SIGTERM)
    back = pull_until(q, topic, _lease(backend), 120)
    assert w.wait(timeout=120) == 0
    assert back is not None and Task.model_validate_json(back.data).task_id == task.task_id
    assert back.delivery_attempt == 1, "hand-back must not spend a delivery"
    w.wait_for("preempted")
    q.ack(back)


def test_preempted_six_times_under_a_delivery_limit_of_five_still_completes(tmp_path: Path, topic: str) -> None:
    backend = Backend("local", f"local://{tmp_path / 'q.db'}", 2)
    q = backend.open()
    q.setup(topic, topic, max_deliveries=5)
    out = tmp_path / "finally"
    publish_tasks(q, topic, [Task(project="common", workflow="sleep", args=["2", str(out)])])
    for _ in range(6):
        w = WorkerProc(backend.url, topic)
        w.wait_for("started", timeout=30)
        w.signal(signal.SIGTERM)
        assert w.wait(timeout=10) == 0
    w = WorkerProc(backend.url, topic, idle_timeout=2)
    assert w.wait(timeout=60) == 0
    assert out.exists()
    assert pull_until_canary(q, dead_letter_name(topic), 2) == []


def test_task_past_time_limit_is_stopped_and_dead_lettered(backend: Backend, topic: str, tmp_path: Path) -> None:
    q = backend.open()
    q.setup(topic, topic)
    hang = Task(project="common", workflow="sleep", args=["600"], time_limit=1.0)
    after = tmp_path / "after"
    publish_tasks(q, topic, [hang, Task(project="common", workflow="write_file", args=[str(after), "ok"])])
    w = WorkerProc(backend.url, topic, idle_timeout=4, max_attempts=2, retries=100, retry_sleep=0.1)
    assert w.wait(timeout=120) == 0
    assert after.read_text() == "ok"
    dead = dead_letters(q, topic, _lease(backend), expect=1)
    assert dead[0].attributes["rslp_kind"] == "timeout"
    assert "timed out after 1s" in dead[0].attributes[DEAD_LETTER_REASON]
    assert w.count("retried") == 1


def test_cpu_bound_task_longer_than_three_leases_runs_once(backend: Backend, topic: str, tmp_path: Path) -> None:
    q = backend.open()
    q.setup(topic, topic)
    lease = _lease(backend)
    runs = tmp_path / "runs"
    publish_tasks(q, topic, [Task(project="common", workflow="spin", args=[str(lease * 3), str(runs)])])
    # Two workers: had the lease lapsed while the task held the CPU, the free one would have started it too.
    workers = [WorkerProc(backend.url, topic, lease_seconds=lease, idle_timeout=600) for _ in range(2)]
    try:
        deadline = time.monotonic() + lease * 10 + 60
        while not any(w.count("done") for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        for w in workers:
            w.signal(signal.SIGTERM)
        assert [w.wait(timeout=60) for w in workers] == [0, 0]
    assert runs.read_text().count("spun") == 1
    assert sum(w.count("started") for w in workers) == 1
    assert sum(w.count("lease_extended") for w in workers) >= 6
    # Nothing was left behind or handed back: the task was acked once, not redelivered.
    assert pull_until_canary(q, topic, lease) == []


def test_kill9_mid_task_is_redelivered_and_200_tasks_done_once(backend: Backend, topic: str, tmp_path: Path) -> None:
    q = backend.open()
    q.setup(topic, topic)
    lease = _lease(backend)
    job = tmp_path / "job"
    out = tmp_path / "out"
    out.mkdir()
    write_job(job, "j200", {"sleep": topic}, partition_count=200)
    tasks = [
        Task(
            project="common",
            workflow="sleep",
            args=["0.02", str(out / f"{i}")],
            job_id="j200",
            job_root=str(job),
            partition=f"p{i:05d}",
            step="sleep",
        )
        for i in range(200)
    ]
    publish_tasks(q, topic, tasks)
    victim = WorkerProc(backend.url, topic, lease_seconds=lease, idle_timeout=600)
    victim.wait_for("done", timeout=30)
    victim.wait_for("started", timeout=30)
    victim.kill()
    # They run until every task is done, the victim's included once its lease has run out.
    others = [WorkerProc(backend.url, topic, lease_seconds=lease, idle_timeout=600) for _ in range(2)]
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and list(JobRoot(job).states("sleep").values()).count("done") < 200:
            time.sleep(0.2)
    finally:
        for w in others:
            w.signal(signal.SIGTERM)
        assert [w.wait(timeout=60) for w in others] == [0, 0]
    states = JobRoot(job).states("sleep")
    assert len(states) == 200 and set(states.values()) == {"done"}
    assert len(list(out.iterdir())) == 200
    # Exactly once in effect: at most the task the victim held was started twice.
    started = victim.count("started") + sum(w.count("started") for w in others)
    assert 200 <= started <= 201


def test_sigterm_with_grace_lets_a_short_task_finish(tmp_path: Path, topic: str) -> None:
    backend = Backend("local", f"local://{tmp_path / 'q.db'}", 2)
    q = backend.open()
    q.setup(topic, topic)
    out = tmp_path / "finished"
    publish_tasks(q, topic, [Task(project="common", workflow="sleep", args=["1.5", str(out)])])
    w = WorkerProc(backend.url, topic, grace_seconds=5)
    w.wait_for("started", timeout=30)
    w.signal(signal.SIGTERM)
    assert w.wait(timeout=10) == 0
    assert out.exists()
    assert w.count("done") == 1 and w.count("preempted") == 0
    assert q.counts(topic).backlog == 0


def test_worker_serves_prometheus_metrics(tmp_path: Path, topic: str) -> None:
    import urllib.request

    from rslp.testing.emulator import free_port

    backend = Backend("local", f"local://{tmp_path / 'q.db'}", 2)
    q = backend.open()
    q.setup(topic, topic)
    publish_tasks(
        q, topic, [Task(project="common", workflow="noop"), Task(project="common", workflow="fail", args=["x"])]
    )
    port = free_port()
    w = WorkerProc(backend.url, topic, metrics_port=port, max_attempts=1, retries=100)
    w.wait_for("dead_lettered", timeout=30)
    w.wait_for("done", timeout=30)
    # The counters move just after the events are logged: read until they have.
    deadline = time.monotonic() + 30
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        if 'outcome="error"' in text or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    w.signal(signal.SIGTERM)
    assert w.wait(timeout=10) == 0
    assert 'rslp_tasks_total{outcome="ok",workflow="common/noop"} 1.0' in text
    assert 'rslp_tasks_total{outcome="error",workflow="common/fail"} 1.0' in text
    assert "rslp_task_duration_seconds_count" in text
