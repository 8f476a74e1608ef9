"""rslp.storage: the one place that knows local disk from object stores, and writes and lists accordingly."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pytest
from upath import UPath

from rslp import storage
from rslp.storage import (
    UnreadableFile,
    absolute,
    atomic_folder,
    atomic_output,
    create_only,
    is_local,
    listing,
    local_copy,
    read_json_object,
    write_atomic,
    write_json_atomic,
)
from tests.unit.test_pipeline_postprocess import visible


def _memory(name: str) -> UPath:
    return UPath(f"memory://storage-{uuid.uuid4().hex}/{name}")


def _place(where: str, tmp_path: Path, request: pytest.FixtureRequest, name: str) -> UPath:
    """``name`` in a fresh folder on local disk, memory:// or the GCS emulator."""
    if where == "local":
        return UPath(tmp_path / name)
    if where == "memory":
        return _memory(name)
    return UPath(f"{request.getfixturevalue('gcs_bucket')}/storage-{uuid.uuid4().hex}/{name}")


@pytest.mark.parametrize(
    "path",
    [
        "/tmp/x",
        "relative/x",
        "file:///tmp/x",
        "local:///tmp/x",
        Path("/tmp/x"),
        UPath("/tmp/x"),
        UPath("file:///tmp/x"),
    ],
)
def test_plain_paths_and_file_and_local_urls_are_local_disk(path: str | Path | UPath) -> None:
    assert is_local(path)


@pytest.mark.parametrize("path", ["gs://bucket/x", "memory://x", "s3://bucket/x", UPath("gs://bucket/x")])
def test_object_store_urls_are_not_local_disk(path: str | UPath) -> None:
    assert not is_local(path)


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_temporary_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ledger's writer once left its hidden temporary file behind when the rename failed."""
    dest = tmp_path / "markers" / "t.done.json"
    write_atomic(dest, "old")

    def full(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError, match="disk full"):
        write_json_atomic(dest, {"new": 1})
    assert dest.read_text() == "old"
    assert os.listdir(dest.parent) == ["t.done.json"]


def test_an_atomic_write_creates_its_folder_and_replaces_the_file_whole(tmp_path: Path) -> None:
    dest = UPath(tmp_path / "a" / "b" / "x.json")
    write_json_atomic(dest, {"n": 1})
    write_atomic(dest, b"\x00bytes")
    assert dest.read_bytes() == b"\x00bytes"
    assert os.listdir(tmp_path / "a" / "b") == ["x.json"]


def test_an_atomic_write_to_an_object_store_writes_the_whole_object() -> None:
    dest = _memory("x.json")
    write_json_atomic(dest, {"n": 1})
    assert json.loads(dest.read_text()) == {"n": 1}


# Not on the GCS emulator: gcp-storage-emulator ignores ifGenerationMatch, so there a second create succeeds.
@pytest.mark.parametrize("where", ["local", "memory"])
def test_of_two_create_only_writes_exactly_one_creates_the_file(
    tmp_path: Path, request: pytest.FixtureRequest, where: str
) -> None:
    path = _place(where, tmp_path, request, "claims/ready")
    assert create_only(path, b"first")
    assert not create_only(path, b"second")
    assert path.read_bytes() == b"first"


def test_atomic_output_leaves_nothing_behind_on_failure(tmp_path: Path) -> None:
    dest = UPath(tmp_path / "out" / "p1.tif")
    with pytest.raises(OSError, match="disk full"), atomic_output(dest) as tmp:
        tmp.write_text("half")
        raise OSError("disk full")
    assert not dest.exists() and list((tmp_path / "out").iterdir()) == []
    with atomic_output(dest) as tmp:
        tmp.write_text("whole")
        assert visible(dest.parent) == set()  # not visible until complete
    assert dest.read_text() == "whole"


def test_an_atomic_folder_replaces_the_old_one_only_when_complete(tmp_path: Path) -> None:
    dest = tmp_path / "scene"
    with atomic_folder(dest) as tmp:
        (tmp / "a.tif").write_text("one")
    with pytest.raises(OSError, match="disk full"), atomic_folder(dest) as tmp:
        (tmp / "b.tif").write_text("half")
        raise OSError("disk full")
    assert os.listdir(tmp_path) == ["scene"] and os.listdir(dest) == ["a.tif"]
    with atomic_folder(dest) as tmp:
        (tmp / "b.tif").write_text("two")
    assert os.listdir(dest) == ["b.tif"]


@pytest.mark.parametrize("where", ["local", "memory", "gcs"])
def test_a_listing_gives_names_and_times_and_sees_what_was_written_after_the_last_one(
    tmp_path: Path, request: pytest.FixtureRequest, where: str
) -> None:
    folder = _place(where, tmp_path, request, "f")
    assert list(listing(folder)) == []  # missing: nothing
    before = time.time() - 5
    write_atomic(folder / "a", "")
    assert [name for name, _ in listing(folder)] == ["a"]
    write_atomic(folder / "b", "")  # gcsfs caches a listing per process: this one must be fresh
    entries = dict(listing(folder))
    assert sorted(entries) == ["a", "b"]
    assert all((t := modified()) is not None and t >= before for modified in entries.values())


def test_a_json_object_read_refuses_what_is_not_one_in_one_line(tmp_path: Path) -> None:
    path = UPath(tmp_path / "m.json")
    with pytest.raises(FileNotFoundError):
        read_json_object(path)
    for content, why in (("[1]", "a JSON list, not an object"), ("{", "not JSON"), ("[" * 100_000, "nested too deep")):
        path.write_text(content)
        with pytest.raises(UnreadableFile, match=why):
            read_json_object(path)
    path.write_text("{}" + " " * storage.MARKER_LIMIT)
    with pytest.raises(UnreadableFile, match="more than the"):
        read_json_object(path)
    path.write_text('{"state": "done"}')
    assert read_json_object(path) == {"state": "done"}


def test_a_local_copy_is_the_file_itself_on_local_disk_and_a_download_elsewhere(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    here = tmp_path / "a.tif"
    here.write_bytes(b"local")
    assert local_copy(UPath(here), scratch) == here and os.listdir(scratch) == []
    remote = _memory("b.tif")
    remote.write_bytes(b"remote")
    copy = local_copy(remote, scratch, "0000001.tif")
    assert copy == scratch / "0000001.tif" and copy.read_bytes() == b"remote"


def test_a_file_url_names_the_same_job_root_as_its_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`rslp dlq` and the queue choice once kept ``file://`` roots as given, unlike write-jobs' header."""
    from rslp.queue.choice import queue_to_act_on
    from rslp.queue.placement import default_queue_url

    monkeypatch.chdir(tmp_path)
    assert absolute("job") == str(tmp_path / "job")
    assert absolute(f"file://{tmp_path}/job") == str(tmp_path / "job")
    assert absolute("gs://bucket/job") == "gs://bucket/job"
    own = default_queue_url(str(tmp_path / "job"))  # what write-jobs recorded
    assert queue_to_act_on(f"file://{tmp_path}/job", own, None, "rslp dlq replay") == own
