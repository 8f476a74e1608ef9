"""The worker as a process: its exit codes, and what happens to its task process when it dies."""

from __future__ import annotations

import os
import subprocess
import sys

from rslp.errors import ExitCode
from rslp.task import Task
from tests.conftest import PROJECT, Backend
from tests.integration.workers import publish_tasks


def _ancestor_worker(subscription: str, *flags: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "rslp.main", "common", "worker", "--project_id", PROJECT]
    cmd += ["--subscription_id", subscription, *flags]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    return subprocess.run(cmd, timeout=120, capture_output=True, text=True, env=env)


def test_too_many_failures_exits_3_and_idle_exits_0_on_the_ancestor_command(emulator_host: str, topic: str) -> None:
    q = Backend("pubsub", f"pubsub://{PROJECT}", 10).open()
    q.setup(topic, topic)
    publish_tasks(q, topic, [Task(project="common", workflow="fail", args=[f"f{i}"]) for i in range(2)])
    failed = _ancestor_worker(topic, "--idle_timeout", "20", "--retries", "2", "--max_attempts", "1")
    assert failed.returncode == ExitCode.TOO_MANY_FAILURES == 3, failed.stderr[-2000:]
    assert "too_many_failures" in failed.stderr
    idle = _ancestor_worker(topic, "--idle_timeout", "1")
    assert idle.returncode == ExitCode.OK, idle.stderr[-2000:]
    assert "idle_exit" in idle.stderr
