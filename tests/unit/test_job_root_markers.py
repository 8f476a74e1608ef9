"""Marker names: one spelling, one parser and one ranking, shared by the worker and every reader."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from rslp.jobroot import STATES, JobRoot, marker_name, parse_marker_name
from rslp.pipeline.job import make_task
from rslp.task import Task


def _task(partition: str = "p00000") -> Task:
    return make_task("markers-test", "/unused", "prepare", partition)


@pytest.mark.parametrize("state", STATES)
def test_the_name_the_worker_writes_parses_back_to_its_task_and_state(tmp_path: Path, state: str) -> None:
    task = _task()
    JobRoot(tmp_path).mark(task, state)
    (name,) = os.listdir(tmp_path / "markers" / "prepare")
    assert name == marker_name(task.task_id, state)
    assert parse_marker_name(name) == (task.task_id, state)
    assert JobRoot(tmp_path).states("prepare") == {task.task_id: state}


@pytest.mark.parametrize(
    "name", [".abc.done.json.1f2e.tmp", "abc.finished.json", "abc", "abc.json", "README", "abc.done.json.bak"]
)
def test_names_that_are_not_markers_parse_to_nothing(name: str) -> None:
    assert parse_marker_name(name) is None


def test_an_unknown_state_is_never_written() -> None:
    with pytest.raises(ValueError, match="unknown marker state 'finished'"):
        marker_name("abc", "finished")


@pytest.mark.parametrize("order", list(itertools.permutations(STATES)))
def test_a_tasks_state_is_its_most_final_marker_whatever_order_they_were_written(
    tmp_path: Path, order: tuple[str, ...]
) -> None:
    task, other = _task("p00000"), _task("p00001")
    job = JobRoot(tmp_path)
    for state in order:
        job.mark(task, state)
    job.mark(other, order[0])
    (tmp_path / "markers" / "prepare" / f".{task.task_id}.done.json.0a1b.tmp").write_text("{}")  # being written
    (tmp_path / "markers" / "prepare" / "notes.txt").write_text("")
    assert job.states("prepare") == {task.task_id: "done", other.task_id: order[0]}


def test_the_newest_marker_is_the_latest_written_and_strays_do_not_count(tmp_path: Path) -> None:
    job = JobRoot(tmp_path)
    assert job.newest_marker("prepare") is None
    job.mark(_task("p00000"), "done")
    job.mark(_task("p00001"), "running")
    folder = tmp_path / "markers" / "prepare"
    os.utime(folder / marker_name(_task("p00000").task_id, "done"), (1000, 1000))
    os.utime(folder / marker_name(_task("p00001").task_id, "running"), (2000, 2000))
    (folder / "notes.txt").write_text("")  # written now, but not a marker
    assert job.newest_marker("prepare") == 2000
    assert job.steps() == ["prepare"]
