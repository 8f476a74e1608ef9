"""A worker's claim on a job task: where it lives, who may take it, when a waiting copy comes back."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from upath import UPath

from rslp.jobroot import JobRoot, JobRootError
from rslp.task import Task
from rslp.worker.task_claim import CLAIM_SECONDS, TaskClaim


def _task(job_root: str) -> Task:
    return Task(project="common", workflow="noop", job_id="j", job_root=job_root, partition="p00000", step="noop")


def test_a_job_task_is_claimed_under_its_job_root_and_the_claim_is_given_up(tmp_path: Path) -> None:
    ledger, task = JobRoot(tmp_path), _task(str(tmp_path))
    claim = TaskClaim(ledger, task, "w1")
    assert claim.take()
    path = ledger.claim_path(task.step or "task", task.task_id)
    assert path.path == str(tmp_path / "claims" / "noop" / f"{task.task_id}.claim")
    assert path.exists()
    claim.give_up()
    claim.give_up()  # twice is fine (after a failed run, then at the end)
    assert not path.exists()


def test_a_second_delivery_is_due_back_when_the_holders_claim_would_go_stale(tmp_path: Path) -> None:
    ledger, task = JobRoot(tmp_path), _task(str(tmp_path))
    holder, second = TaskClaim(ledger, task, "w1"), TaskClaim(ledger, task, "w2")
    try:
        assert holder.take()
        assert not second.take()
        later = second.later()
        assert later.not_before is not None
        due = (later.not_before - datetime.now(UTC)).total_seconds()
        assert CLAIM_SECONDS - 2 < due <= CLAIM_SECONDS
        assert later.model_copy(update={"not_before": None}) == task  # nothing else changes: same id, same attempt
    finally:
        holder.give_up()
        second.give_up()
    assert ledger.claim_path(task.step or "task", task.task_id).exists() is False
    assert TaskClaim(ledger, task, "w2").take()


def test_a_task_without_a_job_root_needs_no_claim(tmp_path: Path) -> None:
    claim = TaskClaim(None, Task(project="common", workflow="noop"), "w1")
    assert claim.take() and claim.path is None
    claim.give_up()


def test_a_claims_folder_that_is_a_file_is_the_job_roots_fault(tmp_path: Path) -> None:
    (tmp_path / "claims").write_text("not a folder")
    with pytest.raises(JobRootError, match="cannot take claim"):
        TaskClaim(JobRoot(tmp_path), _task(str(tmp_path)), "w1").take()


def test_a_task_claim_is_taken_kept_fresh_and_given_up_on_object_storage(gcs_bucket: str) -> None:
    """On gs:// as on local disk. (Exclusion is not shown here: the GCS emulator ignores the
    create-only precondition that makes a second taker fail on GCS itself.)"""
    root = UPath(f"{gcs_bucket}/claims-{time.time_ns()}")
    ledger, task = JobRoot(root), _task(str(root))
    claim = TaskClaim(ledger, task, "w1")
    assert claim.take()
    path = ledger.claim_path(task.step or "task", task.task_id)
    written = path.stat().st_mtime
    time.sleep(CLAIM_SECONDS / 3 + 1)
    assert path.stat().st_mtime > written  # refreshed by the holder's thread
    claim.give_up()
    assert not path.exists()


def test_a_claims_folder_that_leads_out_of_the_job_root_is_refused(tmp_path: Path) -> None:
    """Whoever writes a job root may make ``claims`` a symlink: no claim is ever written through it."""
    root, outside = tmp_path / "job", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    (root / "claims").symlink_to(outside)
    with pytest.raises(JobRootError, match="through a symlink"):
        TaskClaim(JobRoot(root), _task(str(root)), "w1").take()
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("replacement", ["fifo", "huge"])
def test_a_claim_replaced_by_a_job_root_writer_is_given_up_without_hanging_or_reading_it_whole(
    tmp_path: Path, replacement: str
) -> None:
    """Whoever writes the job root may swap a held claim for a FIFO or a huge file: giving up must still return."""
    import os

    from rslp.claims import CLAIM_LIMIT

    ledger, task = JobRoot(tmp_path), _task(str(tmp_path))
    claim = TaskClaim(ledger, task, "w1")
    assert claim.take()
    path = Path(ledger.claim_path(task.step or "task", task.task_id).path)
    path.unlink()
    if replacement == "fifo":
        os.mkfifo(path)  # reading it whole would block until someone writes to it
    else:
        path.write_bytes(b"{" + b" " * (CLAIM_LIMIT + 1))
    claim.give_up()  # not ours any more: left where it is, for its staleness to decide
    assert path.exists()


def test_a_store_that_refuses_to_delete_a_claim_leaves_it_to_go_stale_without_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Giving up runs after the outcome is settled (the message acked): a refusal there must not fail the task."""
    from fsspec.implementations.local import LocalFileSystem

    ledger, task = JobRoot(tmp_path), _task(str(tmp_path))
    claim = TaskClaim(ledger, task, "w1")
    assert claim.take()

    def refuse(self: LocalFileSystem, path: str) -> None:
        raise PermissionError(f"denied: {path}")

    monkeypatch.setattr(LocalFileSystem, "rm_file", refuse)
    claim.give_up()
    assert ledger.claim_path(task.step or "task", task.task_id).exists()  # stale in CLAIM_SECONDS, taken over then
