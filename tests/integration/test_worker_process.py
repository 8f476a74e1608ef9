"""The worker as a process: its exit codes, and what happens to its task process when it dies."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rslp.common.worker import worker_pipeline
from rslp.errors import ExitCode
from rslp.task import Task
from rslp.worker.runner import TaskRunner
from rslp.worker.settings import DATA_DISK_SCRATCH, scratch_root_for
from tests.conftest import PROJECT, Backend
from tests.integration.workers import WorkerProc, publish_tasks


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


def _descendants(pid: int) -> list[int]:
    """Every process under ``pid`` (Linux /proc), children first."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            out += [int(child), *_descendants(int(child))]
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")  # a zombie has stopped running; only its exit status is left


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_sigkilled_worker_takes_its_task_process_with_it(tmp_path: Path, topic: str) -> None:
    backend = Backend("local", f"local://{tmp_path / 'q.db'}", 2)
    q = backend.open()
    q.setup(topic, topic)
    trace = tmp_path / "slept"
    publish_tasks(q, topic, [Task(project="common", workflow="sleep", args=["60", str(trace)])])
    w = WorkerProc(backend.url, topic)
    w.wait_for("started", timeout=60)
    # Let the child take the task off its pipe: an idle child exits on its own when the
    # pipe closes, and the test would then prove nothing. (Passing does not depend on it.)
    time.sleep(1.0)
    orphans = _descendants(w.proc.pid)
    assert len(orphans) >= 2, "the task process and multiprocessing's resource tracker are children of the worker"
    w.kill()
    deadline = time.monotonic() + 2.0
    while any(_alive(p) for p in orphans) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [Path(f"/proc/{p}/cmdline").read_text() for p in orphans if _alive(p)]
    assert not survivors, f"outlived their worker: {survivors}"


def test_idle_task_process_exits_on_its_own_instead_of_being_killed() -> None:
    """A killed child would leave tqdm's lock behind and the tracker would warn of leaked semaphores."""
    runner = TaskRunner()
    runner.start()
    child = runner._proc
    assert child is not None
    runner.close()
    assert child.exitcode == 0


def test_ancestor_launch_command_line_with_manage_scratch_dir_flag_runs(
    emulator_host: str, topic: str, tmp_path: Path
) -> None:
    """The ancestor's `common launch` starts workers as `common worker P S --manage_scratch_dir_on_data_disk False`."""
    q = Backend("pubsub", f"pubsub://{PROJECT}", 10).open()
    q.setup(topic, topic)
    out = tmp_path / "out"
    publish_tasks(q, topic, [Task(project="common", workflow="write_file", args=[str(out), "abc"])])
    cmd = [sys.executable, "-m", "rslp.main", "common", "worker", PROJECT, topic]
    cmd += ["--manage_scratch_dir_on_data_disk", "False", "--idle_timeout", "2"]
    done = subprocess.run(
        cmd, timeout=120, capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "disabled"}
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.read_text() == "abc"
    assert worker_pipeline(PROJECT, topic, idle_timeout=1, manage_scratch_dir_on_data_disk=False) == ExitCode.OK


def test_manage_scratch_dir_on_data_disk_puts_scratch_on_data_unless_a_root_is_given() -> None:
    assert scratch_root_for(None, True) == DATA_DISK_SCRATCH
    assert scratch_root_for("/fast", True) == "/fast"
    assert scratch_root_for(None, False) is None  # the worker's default
