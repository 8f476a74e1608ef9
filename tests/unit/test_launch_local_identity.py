"""`rslp fleet stop --backend local` signals a worker's own process, never one that reused its pid."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rslp.launch.local import LocalFleetClient, start_time


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated process of this user, the kind that may get a dead worker's pid."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield process
    process.kill()
    process.wait()


@pytest.mark.parametrize("recorded_start", ["another start time", "no start time"])
def test_a_stale_record_whose_pid_was_reused_is_neither_running_nor_signalled(
    tmp_path: Path, bystander: subprocess.Popen[bytes], recorded_start: str
) -> None:
    record = {"id": "local-stale", "name": "demo-abc-w0", "command": [], "log": "-", "pid": bystander.pid}
    own_start = start_time(bystander.pid)
    assert own_start is not None
    if recorded_start == "another start time":
        record["pid_start"] = own_start - 1  # the worker that had this pid started earlier
    (tmp_path / "local-stale.json").write_text(json.dumps(record))
    client = LocalFleetClient(tmp_path)
    assert [w.status for w in client.list_workloads(None, "demo", active_only=False)] == ["failed"]
    assert client.cancel(["local-stale"]) == []
    assert bystander.poll() is None, "an unrelated process was signalled"


def test_a_live_worker_is_known_by_its_start_time_and_stopped(
    tmp_path: Path, bystander: subprocess.Popen[bytes]
) -> None:
    record = {"id": "local-live", "name": "demo-abc-w0", "command": [], "log": "-", "pid": bystander.pid}
    record["pid_start"] = start_time(bystander.pid)
    (tmp_path / "local-live.json").write_text(json.dumps(record))
    client = LocalFleetClient(tmp_path)
    assert [w.status for w in client.list_workloads(None, "demo", active_only=True)] == ["running"]
    assert client.cancel(["local-live"]) == ["local-live"]
    assert bystander.wait(timeout=10) != 0
