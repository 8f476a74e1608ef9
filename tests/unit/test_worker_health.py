"""The worker's check on itself (rslp/worker/health.py): scratch, then a canary in a fresh task process."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rslp.task import Task
from rslp.worker import health
from rslp.worker.runner import TaskRunner


@pytest.fixture
def runner() -> Iterator[TaskRunner]:
    r = TaskRunner()
    yield r
    r.close()


def test_a_well_worker_passes_and_leaves_nothing_in_its_scratch(runner: TaskRunner, tmp_path: Path) -> None:
    assert health.health_problem(runner, tmp_path / "scratch", threading.Event()) is None
    assert list((tmp_path / "scratch").iterdir()) == []


def test_a_scratch_root_that_cannot_be_used_is_the_workers_problem(runner: TaskRunner, tmp_path: Path) -> None:
    (tmp_path / "scratch").write_text("a file where a folder belongs")
    problem = health.health_problem(runner, tmp_path / "scratch", threading.Event())
    assert problem is not None and problem.startswith(f"cannot use its scratch root {tmp_path / 'scratch'}")


def test_a_task_process_that_dies_on_the_canary_is_the_workers_problem(
    runner: TaskRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a broken environment would: here the canary itself kills its process."""
    monkeypatch.setattr(health, "CANARY", Task(project="common", workflow="crash"))
    problem = health.health_problem(runner, tmp_path / "scratch", threading.Event())
    assert problem is not None and "cannot run the common/crash canary (crashed: task process died" in problem
