"""A task whose worker died outright runs again within seconds on a free worker."""

from __future__ import annotations

import time
from pathlib import Path

from rslp.task import Task
from rslp.testing.workers import epoch
from rslp.worker.lease import DEFAULT_LEASE_SECONDS
from tests.conftest import Backend
from tests.integration.workers import WorkerProc, publish_tasks

FAILOVER_GOAL = 15.0
TASK_SECONDS = 9.0


def test_task_of_a_worker_whose_process_group_was_killed_runs_again_within_15s(
    backend: Backend, topic: str, tmp_path: Path
) -> None:
    """SIGKILL of the worker's whole process group (worker and task process) mid-task, as a
    container kill or an OOM kill does; with the default lease, the free worker starts the
    task within 15 s, and its own heartbeat extends the lease no more than once per 3 s."""
    assert DEFAULT_LEASE_SECONDS < FAILOVER_GOAL
    q = backend.open()
    q.setup(topic, topic)
    out = tmp_path / "slept"
    publish_tasks(q, topic, [Task(project="common", workflow="sleep", args=[str(TASK_SECONDS), str(out)])])
    victim = WorkerProc(backend.url, topic, new_session=True, idle_timeout=60)
    standby = None
    try:
        victim.wait_for("started", timeout=60)
        standby = WorkerProc(backend.url, topic, idle_timeout=60)  # free: the only task is the victim's
        standby.wait_for("worker_started", timeout=60)
        victim.wait_for("lease_extended", timeout=30)  # mid-task, its lease kept alive by the heartbeat
        victim.kill_group()
        killed = time.time()
        restarted = epoch(standby.wait_for("started", timeout=60))
        assert restarted - killed <= FAILOVER_GOAL, f"task ran again {restarted - killed:.1f} s after the kill"
        done = standby.wait_for("done", timeout=TASK_SECONDS + 30)
        assert out.exists()
        assert standby.count("lease_extended") <= float(done["duration"]) / 3 + 1
    finally:
        victim.kill()
        if standby is not None:
            standby.kill()
