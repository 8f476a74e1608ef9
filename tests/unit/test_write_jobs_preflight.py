"""write-jobs is all-or-nothing: what it cannot finish, it does not start; a re-run records what it used."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rslp import cli
from rslp.errors import ExitCode
from rslp.jobroot import JobRoot


def write_jobs_cli(demo: Path, job_root: Path, queue: str | None = None) -> int:
    argv = ["write-jobs", "--config", str(demo / "pipeline.yaml"), "--request", str(demo / "request.geojson")]
    argv += ["--job_root", str(job_root)] + (["--queue", queue] if queue else [])
    return cli.main(argv)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` and its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def unusable_queues(tmp_path: Path) -> list[tuple[str, str]]:
    """(queue URL, what the error must name): places no queue file can be created, even as root."""
    (tmp_path / "a-file").write_text("not a folder")
    return [
        (f"local://{tmp_path}/a-file/queue.db", f"{tmp_path}/a-file is a file, not a folder"),
        ("local:///proc/rslp-no-such-place/queue.db", "cannot write in /proc"),
        (f"local://{tmp_path}", "is a directory, not a queue file"),
    ]


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_an_unusable_queue_fails_in_one_line_before_anything_is_written(
    demo_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job_root = tmp_path / "job"
    for url, named in unusable_queues(tmp_path):
        assert write_jobs_cli(demo_copy, job_root, url) == ExitCode.USAGE
        line = one_error_line(capsys.readouterr().err)
        assert line.startswith("rslp write-jobs: error: queue ") and url in line and named in line
        assert not job_root.exists()


def test_a_rerun_with_an_unusable_queue_leaves_the_job_root_as_it_was(
    demo_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job_root = tmp_path / "job"
    assert write_jobs_cli(demo_copy, job_root) == ExitCode.OK
    before = snapshot(job_root)
    for url, _ in unusable_queues(tmp_path):
        assert write_jobs_cli(demo_copy, job_root, url) == ExitCode.USAGE
        assert snapshot(job_root) == before
    assert "Traceback" not in capsys.readouterr().err


def test_an_unwritable_job_root_fails_before_the_queue_is_created(
    demo_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    queue = tmp_path / "queues" / "q.db"
    assert write_jobs_cli(demo_copy, tmp_path / "a-file" / "job", f"local://{queue}") == ExitCode.USAGE
    assert "job root" in one_error_line(capsys.readouterr().err)
    assert not queue.parent.exists()


def test_a_rerun_on_another_queue_records_it_so_status_reads_that_queue(
    demo_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job_root = tmp_path / "job"
    first, second = tmp_path / "first.db", tmp_path / "second.db"
    assert write_jobs_cli(demo_copy, job_root, f"local://{first}") == ExitCode.OK
    os.remove(first)  # the old queue is gone, as after a typo'd first run
    assert write_jobs_cli(demo_copy, job_root, f"local://{second}") == ExitCode.OK
    assert JobRoot(job_root).read_manifest().queue == f"local://{second}"
    capsys.readouterr()
    assert cli.main(["status", "--job_root", str(job_root)]) == ExitCode.OK
    out = capsys.readouterr().out
    assert str(second) in out and "does not exist" not in out
