"""Marker and manifest reads and writes ride out a storage service's bad minutes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions as api

from rslp import storage
from rslp.jobroot import JobRoot, JobRootError
from rslp.task import Task
from rslp.weather import CloudUnavailableError, Weather

FAST = Weather(patience=30, first_wait=0.01, max_wait=0.05)
TASK = Task(project="common", workflow="noop", job_id="j", partition="p", step="s")


class Flaky:
    """Raises ``error`` the first ``times`` calls, then calls ``real``."""

    def __init__(self, real: Any, error: BaseException, times: int) -> None:
        self.real, self.error, self.left = real, error, times

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.left > 0:
            self.left -= 1
            raise self.error
        return self.real(*args, **kwargs)


@pytest.mark.parametrize(
    "error",
    [ConnectionError("reset by peer"), api.ServiceUnavailable("503"), TimeoutError("read timed out")],
    ids=lambda e: e.__class__.__name__,
)
def test_marker_write_and_read_ride_out_transient_storage_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    job = JobRoot(tmp_path, weather=FAST)
    write = Flaky(storage.write_json_atomic, error, 2)
    monkeypatch.setattr(storage, "write_json_atomic", write)
    job.mark(TASK, "done", downstream=[])
    assert write.left == 0
    read = Flaky(storage.read_text, error, 2)
    monkeypatch.setattr(storage, "read_text", read)
    assert job.read(TASK, "done") is not None and read.left == 0
    assert job.read(TASK, "failed") is None


def test_storage_that_stays_down_ends_in_one_line_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = JobRoot(tmp_path, weather=Weather(patience=0.5, first_wait=0.01, max_wait=0.05))
    monkeypatch.setattr(storage, "write_json_atomic", Flaky(None, ConnectionError("down"), 10**6))
    with pytest.raises(CloudUnavailableError, match=r"write marker .*still failing after 0.5s"):
        job.mark(TASK, "running")


def test_a_bad_job_root_is_not_retried(tmp_path: Path) -> None:
    """A plain OSError is the message's problem (the worker dead-letters it), not weather."""
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(JobRootError, match="NotADirectoryError"):
        JobRoot(not_a_dir, weather=Weather(patience=60)).mark(TASK, "running")
