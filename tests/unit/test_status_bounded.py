"""`rslp status` survives what a job-root writer can leave: deep, huge, odd markers and an absurd header."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rslp.errors import PermanentError
from rslp.jobroot import JobRoot
from rslp.jobroot.plan import MAX_STATUS_PARTITIONS
from rslp.status.model import collect
from rslp.status.render import render
from rslp.storage import MARKER_LIMIT as MARKER_LIMIT
from tests.unit.test_status_report import NOW, make_job, mark


def test_markers_nested_100000_deep_are_reported_unreadable_and_status_goes_on(tmp_path: Path) -> None:
    make_job(tmp_path, 3)
    failed = mark(tmp_path, "create_windows", "p00000", "running", "failed", error="boom")
    running = mark(tmp_path, "create_windows", "p00001", "running", at=NOW - 1)
    ledger = JobRoot(tmp_path)
    deep = "[" * 100_000 + "]" * 100_000
    Path(ledger.marker_path("create_windows", failed.task_id, "failed").path).write_text(deep)
    Path(ledger.marker_path("create_windows", running.task_id, "running").path).write_text(deep)
    job = collect(str(tmp_path), now=NOW)
    (failure,) = job.failures
    assert "marker unreadable" in failure.reason and "nested too deep" in failure.reason
    assert [r.task_id for r in job.running] == [running.task_id]
    assert "create_windows" in render(job)


def test_huge_odd_and_fifo_markers_are_skipped_with_a_note_in_bounded_time(tmp_path: Path) -> None:
    make_job(tmp_path, 4)
    ledger = JobRoot(tmp_path)
    tasks = [mark(tmp_path, "create_windows", f"p0000{i}", "running", "failed", error="boom") for i in range(3)]
    paths = [Path(ledger.marker_path("create_windows", t.task_id, "failed").path) for t in tasks]
    paths[0].write_text(" " * (MARKER_LIMIT + 1))
    paths[1].write_text("[1, 2]")
    paths[2].unlink()
    os.mkfifo(paths[2])  # a reader that opened it would wait forever
    reasons = sorted(f.reason for f in collect(str(tmp_path), now=NOW).failures)
    assert len(reasons) == 3 and all(r.startswith("(marker unreadable: ") for r in reasons)
    assert any("not a regular file" in r for r in reasons)
    assert any(f"more than the {MARKER_LIMIT} such a file may have" in r for r in reasons)
    assert any("a JSON list, not an object" in r for r in reasons)


def test_a_header_claiming_300_million_partitions_is_refused_in_one_line(tmp_path: Path) -> None:
    make_job(tmp_path, 2)
    manifest = JobRoot(tmp_path).manifest_path
    header = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**header, "partition_count": 300_000_000}))
    with pytest.raises(PermanentError) as e:
        collect(str(tmp_path), now=NOW)
    assert "\n" not in str(e.value)
    assert f"partition_count: 300,000,000, over the {MAX_STATUS_PARTITIONS:,} partitions" in str(e.value)
