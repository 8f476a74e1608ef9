"""Storage quirks in one place: local disk or not, atomic and create-only writes, bounded reads, listings.

The fleet's files live on local disk, gs:// or Weka, all reached through ``UPath``. The
few places where the kinds differ are here, and only here:

- **Local or not** (:func:`is_local`): ``file://``, ``local://`` and plain paths are
  local disk; everything else is an object store (or a test's ``memory://``).
- **Atomic writes** (:func:`write_atomic`, :func:`write_json_atomic`,
  :func:`atomic_output`, :func:`atomic_folder`): a reader never sees half a file. On
  local disk the data goes to a hidden sibling (``.<name>.<random>.tmp``; listings skip
  hidden names) that is renamed into place, and the sibling is removed if the write
  fails; an object store replaces whole objects, so the object is written once complete.
- **Create-only writes** (:func:`create_only`): of two writers, exactly one creates the
  file (``O_EXCL`` on local disk, a generation precondition on GCS); the other learns it
  exists.
- **Bounded reads** (:func:`read_bytes`, :func:`read_text`, :func:`read_json_object`):
  a job root is shared storage, and whoever can write it chooses what a reader opens. A
  FIFO as ``manifest.json`` once hung a worker for good (its main thread blocked in
  ``open``; it ignored SIGTERM), and a symlink to ``/dev/zero`` ran it out of memory. So
  on local disk a file is opened with ``O_NONBLOCK`` (opening a FIFO returns at once),
  ``fstat`` on the open descriptor proves it is a regular file no bigger than its kind's
  cap, and at most cap + 1 bytes are read; on an object store the object's size is asked
  first, and at most the cap is fetched.
- **Copies to local disk** (:func:`local_copy`): GDAL opens files by name, so a file on
  an object store is downloaded to scratch disk first (never read into memory whole).
- **Listings with modification times** (:func:`listing`): ``os.scandir`` on local disk
  (its entries stat lazily: fsspec's local listing builds a dict per entry, and that was
  most of ``rslp status``'s time at 600k markers), one paginated listing with details
  elsewhere (GCS returns the times with the names), never a cached one.

Containment (no path built from a message leads out of its root) is
:func:`rslp.paths.under`'s job. This module knows nothing of job roots.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from upath import UPath

from rslp.errors import PermanentError

#: Protocols of local disk (``file://``, ``local://`` or none).
_LOCAL_PROTOCOLS = frozenset({"", "file", "local"})

KIB, MIB = 1024, 1024 * 1024
#: Caps per kind of file (bytes): far above what write-jobs and the worker write.
HEADER_LIMIT = 1 * MIB  # manifest.json: a few hundred bytes in practice
SHARD_LIMIT = 64 * MIB  # records/<shard>.jsonl: 100 footprints, about 50 kB for grid cells
MARKER_LIMIT = 1 * MIB  # markers: a few downstream tasks, or a reason and a short traceback
CONFIG_LIMIT = 4 * MIB  # pipeline.yaml, dataset.json, model.yaml

AnyPath = str | os.PathLike[str] | UPath


def is_local(path: AnyPath) -> bool:
    """Whether ``path`` is on local disk (a plain path, ``file://`` or ``local://``)."""
    if isinstance(path, UPath):
        return path.protocol in _LOCAL_PROTOCOLS
    if isinstance(path, os.PathLike):
        return True
    return UPath(path).protocol in _LOCAL_PROTOCOLS


def local_path(path: UPath) -> Path:
    """The ``pathlib`` path of a local ``UPath`` (what ``os`` and rasterio take)."""
    return Path(path.path)


def absolute(path: str) -> str:
    """``path`` as it names the same place from any working directory (object-store URLs as given).

    Local paths and ``file://`` URLs become absolute paths: what a job's header records,
    and what job roots are compared and queues placed by.
    """
    p = UPath(path)
    return os.path.abspath(p.path) if is_local(p) else str(p)


def local_copy(path: UPath, scratch: Path, name: str | None = None) -> Path:
    """A local file with ``path``'s content, for libraries that open files by name (GDAL).

    On local disk it is the file itself; from an object store it is downloaded to
    ``scratch / name`` (``path``'s own name by default), never into memory.
    """
    if is_local(path):
        return local_path(path)
    local = scratch / (name or path.name)
    path.fs.get_file(path.path, str(local))
    return local


# -- writes -------------------------------------------------------------------------------


@contextlib.contextmanager
def _renamed_into_place(target: Path) -> Iterator[Path]:
    """Yield a hidden sibling of ``target`` to write; on success it replaces ``target``, on failure it is gone."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:  # not a finally: a successful write makes no extra call
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: AnyPath, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) so that a reader never sees half a file."""
    dest = UPath(path)
    payload = data.encode() if isinstance(data, str) else data
    if not is_local(dest):  # object stores replace whole objects atomically
        dest.write_bytes(payload)
        return
    with _renamed_into_place(local_path(dest)) as tmp:
        tmp.write_bytes(payload)


def write_json_atomic(path: AnyPath, payload: Any) -> None:
    """Write ``payload`` as JSON so that a reader never sees half a file."""
    write_atomic(path, json.dumps(payload, indent=1, default=str))


@contextlib.contextmanager
def atomic_output(dest: UPath) -> Iterator[Path]:
    """Yield a local path to write (for libraries that write files themselves); on success it becomes ``dest``.

    Local files are renamed into place; to an object store the file is uploaded once complete.
    """
    if is_local(dest):
        with _renamed_into_place(local_path(dest)) as tmp:
            yield tmp
        return
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch) / dest.name
        yield tmp
        dest.fs.put_file(str(tmp), dest.path)


@contextlib.contextmanager
def atomic_folder(dest: Path) -> Iterator[Path]:
    """Yield a hidden sibling folder of ``dest`` (local disk) to fill; on success it replaces ``dest``.

    A crash leaves no half-written folder that a later run would take for a finished one.
    """
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}")
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def create_only(path: UPath, data: bytes) -> bool:
    """Create ``path`` holding ``data``; False, writing nothing, if it exists already.

    Of any number of writers, exactly one gets True.
    """
    try:
        try:
            f = path.open("xb")
        except FileNotFoundError:  # its folder is not there yet (local disk; object stores have none)
            path.parent.mkdir(parents=True, exist_ok=True)
            f = path.open("xb")
        with f:
            f.write(data)
    except FileExistsError:
        return False
    return True


# -- bounded reads ------------------------------------------------------------------------


class JobFileError(PermanentError):
    """A job-root file that is not a regular file, or is larger than its kind may be."""


class UnreadableFile(ValueError):
    """A job-root file that is not a regular file of bounded size holding a JSON object; says which and why."""


def read_bytes(path: UPath, limit: int, sized: bool = True) -> bytes:
    """``path``'s content if it is a regular file of at most ``limit`` bytes; JobFileError otherwise.

    A missing file raises FileNotFoundError, as ``read_bytes`` does. On an object store
    the object's size is asked for first, so one too big is refused naming its size;
    ``sized=False`` saves that request (and the listing gcsfs may make for it) for a read
    repeated every few seconds, a claim's: one ranged read that stops past ``limit``.
    """
    if is_local(path):
        return _read_local(path.path, limit)
    if sized:
        info = path.fs.info(path.path)
        if info.get("type") != "file":
            raise JobFileError(f"{path} is not a file ({info.get('type')})")
        size = info.get("size")
        if size is None or size > limit:
            raise JobFileError(f"{path} is {size} bytes, more than the {limit} such a file may have")
    data: bytes = path.fs.cat_file(path.path, start=0, end=limit + 1)
    return _capped(path, data, limit)


def read_text(path: UPath, limit: int) -> str:
    """:func:`read_bytes` as UTF-8 text."""
    return read_bytes(path, limit).decode()


def read_json_object(path: UPath, limit: int = MARKER_LIMIT) -> dict[str, Any]:
    """The JSON object in ``path``; FileNotFoundError if there is none, :class:`UnreadableFile` if it is bad.

    Never dies of what a writer of the job root left: a marker nested 100,000 levels
    deep (``json`` raises RecursionError), a huge or endless file, a FIFO, or a JSON
    list where an object belongs are each one line of :class:`UnreadableFile`.
    """
    try:
        data = read_bytes(path, limit)
    except JobFileError as e:
        raise UnreadableFile(str(e)) from None
    try:
        value = json.loads(data)
    except RecursionError:
        raise UnreadableFile(f"{path}: JSON nested too deep to read") from None
    except ValueError as e:
        raise UnreadableFile(f"{path}: not JSON ({e})") from None
    if not isinstance(value, dict):
        raise UnreadableFile(f"{path}: a JSON {type(value).__name__}, not an object")
    return value


def _read_local(name: str, limit: int) -> bytes:
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        mode = os.fstat(fd)
        if not stat.S_ISREG(mode.st_mode):
            raise JobFileError(f"{name} is not a regular file ({_kind(mode.st_mode)})")
        if mode.st_size > limit:
            raise JobFileError(f"{name} is {mode.st_size} bytes, more than the {limit} such a file may have")
        os.set_blocking(fd, True)
        chunks, left = [], limit + 1
        while left > 0 and (chunk := os.read(fd, min(left, MIB))):
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    return _capped(UPath(name), b"".join(chunks), limit)


def _capped(path: UPath, data: bytes, limit: int) -> bytes:
    if len(data) > limit:  # it grew after its size was read
        raise JobFileError(f"{path} is more than the {limit} bytes such a file may have")
    return data


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


# -- listings -----------------------------------------------------------------------------


def listing(folder: UPath) -> Iterator[tuple[str, Callable[[], float | None]]]:
    """(name, a function giving its modification time) for each entry of ``folder``; nothing if it is missing.

    One listing, never a cached one: fsspec caches listings per process, and without
    fresh ones ``status --watch`` on gs:// redrew its first view forever and a fan-in
    arrival could miss its group's last unit. On local disk the time is a stat, made
    only when asked for.
    """
    if is_local(folder):
        try:
            with os.scandir(folder.path) as it:
                for entry in it:
                    yield entry.name, functools.partial(_stat_mtime, entry)
        except FileNotFoundError:
            return
        return
    folder.fs.invalidate_cache(folder.path)
    try:
        entries = folder.fs.ls(folder.path, detail=True)
    except FileNotFoundError:
        return
    for info in entries:
        yield str(info["name"]).rstrip("/").rsplit("/", 1)[-1], functools.partial(modified_time, info)


def _stat_mtime(entry: os.DirEntry[str]) -> float:
    return entry.stat().st_mtime


def modified_time(info: dict[str, Any]) -> float | None:
    """A listing entry's modification time, whatever the filesystem calls it."""
    for key in ("mtime", "updated", "LastModified", "last_modified", "created"):
        value = info.get(key)
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None
