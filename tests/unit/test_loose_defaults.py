"""Defaults that are safe without a flag: loopback metrics, private queue files and scratch dirs."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rslp.queue import Outgoing
from rslp.queue.local import LocalQueue
from rslp.task import Task
from rslp.worker.loop import Worker
from rslp.worker.metrics import WorkerMetrics
from rslp.worker.runner import Outcome
from rslp.worker.settings import WorkerSettings


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Umask 0, so every mode checked below is the one the code asked for."""
    old = os.umask(0)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_metrics_bind_loopback_unless_told_otherwise() -> None:
    metrics = WorkerMetrics()
    metrics.start(0)
    try:
        assert metrics._server is not None and metrics._server.server_address[0] == "127.0.0.1"
    finally:
        metrics.stop()
    assert WorkerSettings(queue="local:///q.db", subscription=["s"]).metrics_address == "127.0.0.1"


def test_queue_files_are_private(tmp_path: Path, open_umask: None) -> None:
    q = LocalQueue(tmp_path / "q.db")
    q.setup("topic", "topic")
    q.publish("topic", [Outgoing(b"{}")])
    files = sorted(tmp_path.glob("q.db*"))
    assert files and all(_mode(f) == 0o600 for f in files), [(f.name, oct(_mode(f))) for f in files]


def test_scratch_dirs_are_private(tmp_path: Path, open_umask: None) -> None:
    q = LocalQueue(tmp_path / "q.db")
    q.setup("topic", "topic")
    q.publish("topic", [Outgoing(Task(project="common", workflow="noop").encode())])
    settings = WorkerSettings(
        queue=f"local://{tmp_path / 'q.db'}",
        subscription=["topic"],
        idle_timeout=0.5,
        scratch_root=str(tmp_path / "s"),
    )
    worker = Worker(settings, queue=q)
    seen: dict[str, int] = {}

    def run(task: Task, time_limit: Any, scratch_dir: str, *_: Any) -> Outcome:
        seen.update(root=_mode(tmp_path / "s"), scratch=_mode(Path(scratch_dir)))
        return Outcome("ok")

    worker.runner.run = run  # type: ignore[method-assign]
    assert worker.run() == "idle"
    assert seen == {"root": 0o700, "scratch": 0o700}
