"""Issue 25.4: job-root files are regular files of bounded size, read without waiting, never through a symlink out."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from upath import UPath

from rslp import storage
from rslp.jobroot import JobManifest, JobRoot, JobRootError
from rslp.paths import PathEscapeError, under
from rslp.pipeline.job import make_task
from rslp.worker.guard import Rejected, admit


def _job(root: Path) -> None:
    manifest = JobManifest(
        job_id="j", job_root=str(root), config="-", request="-", steps=["prepare"], topics={"prepare": "topic-p"}
    )
    JobRoot(root).write_job(manifest, [{"geometry": {"type": "Point", "coordinates": [0, 0]}}])


@pytest.mark.timeout(20)  # the FIFO once blocked the worker's main thread for good
def test_a_fifo_as_manifest_is_refused_at_once(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "manifest.json")
    with pytest.raises(Rejected, match=r"manifest\.json is not a regular file \(a FIFO\)"):
        admit(make_task("j", str(tmp_path), "prepare", "p00000"))


def test_a_manifest_symlinked_to_dev_zero_is_refused_unread(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").symlink_to("/dev/zero")
    with pytest.raises(Rejected, match=r"leads out of .* through a symlink"):
        admit(make_task("j", str(tmp_path), "prepare", "p00000"))


def test_each_kind_of_job_root_file_has_a_size_cap(tmp_path: Path) -> None:
    _job(tmp_path)
    big = tmp_path / "big"
    big.write_bytes(b" " * (storage.HEADER_LIMIT + 1))
    with pytest.raises(storage.JobFileError, match=f"more than the {storage.HEADER_LIMIT}"):
        storage.read_bytes(UPath(big), storage.HEADER_LIMIT)
    (tmp_path / "manifest.json").write_bytes(big.read_bytes())
    with pytest.raises(Rejected, match=r"manifest\.json is .* bytes, more than"):
        admit(make_task("j", str(tmp_path), "prepare", "p00000"))

    _job(tmp_path)
    task = make_task("j", str(tmp_path), "prepare", "p00000")
    marker = Path(JobRoot(tmp_path).marker_path("prepare", task.task_id, "done").path)
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"downstream": [], "padding": "x" * storage.MARKER_LIMIT}))
    with pytest.raises(Rejected, match="does not parse \\(JobRootError\\)"):
        admit(task)


def test_an_object_store_file_is_sized_before_it_is_read() -> None:
    path = UPath("memory://jobfiles/big.json")
    path.write_bytes(b"x" * 100)
    assert storage.read_bytes(path, 100) == b"x" * 100
    with pytest.raises(storage.JobFileError, match="100 bytes, more than the 99"):
        storage.read_bytes(path, 99)


def test_a_markers_symlink_out_of_the_root_writes_nothing_outside(tmp_path: Path) -> None:
    """`paths.under` was lexical: a `markers` symlink once wrote markers outside the root."""
    root, outside = tmp_path / "job", tmp_path / "outside"
    _job(root)
    outside.mkdir()
    (root / "markers").symlink_to(outside)
    task = make_task("j", str(root), "prepare", "p00000")
    with pytest.raises(PathEscapeError, match="through a symlink"):
        under(root, "markers", "prepare")
    with pytest.raises(Rejected, match="does not parse"):  # reading its done marker
        admit(task)
    with pytest.raises(JobRootError, match="through a symlink"):
        JobRoot(root).mark(task, "running", worker="w")
    (root / "markers").unlink()
    (root / "markers" / "prepare").mkdir(parents=True)
    (root / "markers" / "prepare" / f"{task.task_id}.running.json").symlink_to(outside / "running.json")
    with pytest.raises(JobRootError, match="through a symlink"):  # one marker file linked out
        JobRoot(root).mark(task, "running", worker="w")
    assert list(outside.iterdir()) == []


def test_a_symlink_inside_the_root_to_a_file_inside_it_is_fine(tmp_path: Path) -> None:
    _job(tmp_path)
    (tmp_path / "header-copy.json").write_text((tmp_path / "manifest.json").read_text())
    (tmp_path / "manifest.json").unlink()
    (tmp_path / "manifest.json").symlink_to(tmp_path / "header-copy.json")
    assert admit(make_task("j", str(tmp_path), "prepare", "p00000")).ledger is not None
