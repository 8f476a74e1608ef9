"""The embedded queue's file belongs on local disk: the default is there, a network mount is warned about."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from rslp.jobroot import JobRoot
from rslp.pipeline.write_jobs import write_jobs
from rslp.queue import placement
from rslp.queue.local import LocalQueue
from rslp.queue.placement import NetworkFileSystemWarning, default_queue_url, filesystem_of


def _mounts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, lines: list[str]) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text("\n".join(["/dev/root / ext4 rw 0 0", *lines]) + "\n")
    monkeypatch.setattr(placement, "MOUNTS", mounts)


def test_default_queue_is_on_local_disk_and_the_same_for_one_job_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("RSLP_QUEUE_DIR")
    url = default_queue_url("/weka/jobs/my-job")
    assert url.startswith(f"local://{Path.home() / '.cache' / 'rslp' / 'queues'}/my-job-")
    assert url == default_queue_url("/weka/jobs/my-job") != default_queue_url("/weka/other/my-job")
    monkeypatch.setenv("RSLP_QUEUE_DIR", str(tmp_path))
    assert default_queue_url("gs://bucket/job").startswith(f"local://{tmp_path}/job-")


@pytest.mark.parametrize("fstype", ["nfs4", "cifs", "fuse.wekafs", "wekafs", "lustre"])
def test_queue_on_a_network_mount_is_warned_about_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fstype: str
) -> None:
    shared = tmp_path / "shared"
    _mounts(monkeypatch, tmp_path, [f"server:/export {shared} {fstype} rw 0 0"])
    with pytest.warns(NetworkFileSystemWarning, match=rf"network file system \({fstype} at {shared}\).*WAL"):
        LocalQueue(shared / "job" / "queue.db").close()


def test_queue_on_local_disk_is_not_warned_about(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _mounts(monkeypatch, tmp_path, [f"server:/export {tmp_path / 'elsewhere'} nfs rw 0 0"])
    assert filesystem_of(tmp_path) == ("/", "ext4")
    with warnings.catch_warnings():
        warnings.simplefilter("error", NetworkFileSystemWarning)
        LocalQueue(tmp_path / "queue.db").close()


def test_write_jobs_puts_its_default_queue_on_local_disk_and_says_so(
    demo_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job_root = tmp_path / "job"
    write_jobs(str(demo_copy / "pipeline.yaml"), str(demo_copy / "request.geojson"), str(job_root))
    out = capsys.readouterr().out
    queue = JobRoot(job_root).read_manifest().queue
    assert queue == default_queue_url(str(job_root)) and not (job_root / "queue.db").exists()
    assert f"on {queue}" in out and "local disk (SQLite is unsafe on network mounts)" in out


def test_rerunning_write_jobs_keeps_the_queue_the_job_already_uses(
    demo_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job_root, chosen = tmp_path / "job", f"local://{tmp_path / 'chosen.db'}"
    args = (str(demo_copy / "pipeline.yaml"), str(demo_copy / "request.geojson"), str(job_root))
    write_jobs(*args, queue=chosen)
    capsys.readouterr()
    write_jobs(*args)
    out = capsys.readouterr().out
    assert f"on {chosen}" in out and "local disk" not in out
    assert not Path(default_queue_url(str(job_root)).removeprefix("local://")).exists()
