"""Fleets on this machine: `launch --backend local`, `fleet status`, `fleet stop`, and stalled tasks.

The local backend runs the very worker command a Beaker spec holds, as processes
here; stopping goes through the worker's preemption path, so tasks are handed back.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rslp.errors import QueueResourceError
from rslp.jobroot import JobRoot
from rslp.launch import commands
from rslp.launch.local import FLEET_DIR_ENV
from rslp.launch.pool import PoolSettings
from rslp.queue.local import LocalQueue
from rslp.status.liveness import running_tasks
from rslp.status.model import scan_markers
from rslp.task import Task
from tests.conftest import wait_until
from tests.integration.workers import WorkerProc, publish_tasks, write_job


@pytest.fixture
def fleet_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "fleets"
    monkeypatch.setenv(FLEET_DIR_ENV, str(folder))
    return folder


def test_local_backend_launches_lists_and_stops_workers_through_preemption(
    tmp_path: Path, fleet_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"local://{tmp_path / 'queue.db'}"
    q = LocalQueue(str(tmp_path / "queue.db"))
    q.setup("lf", "lf")
    traces = [tmp_path / f"slept{i}" for i in range(2)]
    publish_tasks(q, "lf", [Task(project="common", workflow="sleep", args=["120", str(t)]) for t in traces])

    names = commands.launch(
        fleet="lf",
        subscription="lf",
        num_workers=2,
        pool=PoolSettings(backend="local", queue=url, idle_timeout=60, worker_args=["--allow_diagnostics", "true"]),
    )
    assert len(names) == 2 and "2 workers of fleet lf" in capsys.readouterr().out
    wait_until(lambda: (c := q.counts("lf")) is not None and c.in_flight == 2, 60, "both tasks leased by the workers")
    workers = commands.status("lf", backend="local")
    assert sorted(w.name for w in workers) == sorted(names)
    assert {w.status for w in workers} == {"running"}

    assert sorted(commands.stop("lf", backend="local")) == sorted(names)
    wait_until(lambda: {w.status for w in commands.status("lf", backend="local")} == {"succeeded"}, 60, "clean exits")
    assert {w.exit_code for w in commands.status("lf", backend="local")} == {0}  # a handled preemption
    counts = q.counts("lf")
    assert counts is not None and (counts.backlog, counts.in_flight) == (2, 0)  # both tasks handed back at once
    assert not any(t.exists() for t in traces)
    assert commands.stop("lf", backend="local") == []


def test_sigkilled_workers_task_shows_as_stalled_within_two_leases(tmp_path: Path) -> None:
    lease = 2.0
    q = LocalQueue(str(tmp_path / "queue.db"))
    q.setup("stl", "stl")
    job = tmp_path / "job"
    write_job(job, "j", {"sleep": "stl"})
    task = Task(
        project="common",
        workflow="sleep",
        args=["120"],
        job_id="j",
        job_root=str(job),
        partition="p00000",
        step="sleep",
    )
    publish_tasks(q, "stl", [task])
    worker = WorkerProc(f"local://{tmp_path / 'queue.db'}", "stl", lease_seconds=lease)
    worker.wait_for("started")
    ledger = JobRoot(job)

    def running() -> list[object]:
        return running_tasks(ledger, "sleep", scan_markers(ledger, "sleep", 1).running, time.time())

    time.sleep(3 * lease)  # alive for longer than two leases: its heartbeat keeps it running
    (alive,) = running()
    assert not alive.stalled and alive.lease_seconds == lease and alive.age < lease  # type: ignore[attr-defined]
    worker.kill()
    took = wait_until(lambda: running()[0].stalled, 6 * lease, "the killed task shown as stalled")  # type: ignore[attr-defined]
    assert took <= 2 * lease + 2  # two leases after the last beat, at most half a lease before the kill


def test_local_launch_on_a_queue_nothing_created_starts_no_worker(tmp_path: Path, fleet_dir: Path) -> None:
    """The README's old example named a queue file nothing had made: two "launched" lines, two exits 4."""
    missing = f"local://{tmp_path / 'q.db'}"
    with pytest.raises(QueueResourceError, match="no such queue"):
        commands.launch(
            fleet="dev", subscription="demo-cpu", num_workers=2, pool=PoolSettings(backend="local", queue=missing)
        )
    q = LocalQueue(str(tmp_path / "q.db"))
    q.setup("demo-cpu", "demo-cpu")
    with pytest.raises(QueueResourceError, match=r"no subscription 'demo-gpu'.*rslp setup"):
        commands.launch(
            fleet="dev",
            subscription="demo-cpu,demo-gpu",
            num_workers=2,
            pool=PoolSettings(backend="local", queue=missing),
        )
    assert commands.status("dev", backend="local") == [] and not list(fleet_dir.glob("local-*.json"))


def test_fleet_status_finds_a_local_fleet_and_shows_why_a_worker_failed(
    tmp_path: Path, fleet_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"local://{tmp_path / 'queue.db'}"
    LocalQueue(str(tmp_path / "queue.db")).setup("lf", "lf")
    commands.launch(
        fleet="bad",
        subscription="lf",
        num_workers=1,
        pool=PoolSettings(backend="local", queue=url, worker_args=["--lease_seconds", "0"]),
    )
    wait_until(lambda: {w.status for w in commands.status("bad")} == {"failed"}, 60, "the worker refuses its flags")
    capsys.readouterr()
    [worker] = commands.status("bad")  # no --backend local: the fleet was launched here
    assert worker.exit_code == 2
    assert "rslp worker: error: --lease_seconds: Input should be greater than or equal to 1" in capsys.readouterr().out
