"""Reading a file that whoever can write a job root chose: a regular file, of bounded size, without waiting.

A job root is shared storage. A FIFO as ``manifest.json`` once hung a worker for good
(its main thread blocked in ``open``; it ignored SIGTERM), and a symlink to
``/dev/zero`` ran it out of memory. So every read of a header, shard, marker or config
goes through :func:`read_bytes`:

- on local disk the file is opened with ``O_NONBLOCK`` (opening a FIFO returns at once),
  then ``fstat`` on the open descriptor proves it is a regular file no bigger than its
  kind's cap, and at most cap + 1 bytes are read; a regular file on local disk never
  blocks a read;
- on an object store the object's size is asked first, and at most the cap is fetched.

Containment (no symlink leads out of the root) is :func:`rslp.paths.under`'s job; a
symlink inside the root to another file inside it is harmless and allowed.
"""

from __future__ import annotations

import os
import stat

from upath import UPath

from rslp.errors import PermanentError
from rslp.paths import LOCAL_PROTOCOLS

KIB, MIB = 1024, 1024 * 1024
#: Caps per kind of file (bytes): far above what write-jobs and the worker write.
HEADER_LIMIT = 1 * MIB  # manifest.json: a few hundred bytes in practice
SHARD_LIMIT = 64 * MIB  # records/<shard>.jsonl: 100 footprints, about 50 kB for grid cells
MARKER_LIMIT = 1 * MIB  # markers: a few downstream tasks, or a reason and a short traceback
CONFIG_LIMIT = 4 * MIB  # pipeline.yaml, dataset.json, model.yaml


class JobFileError(PermanentError):
    """A job-root file that is not a regular file, or is larger than its kind may be."""


def read_bytes(path: UPath, limit: int) -> bytes:
    """``path``'s content if it is a regular file of at most ``limit`` bytes; JobFileError otherwise.

    A missing file raises FileNotFoundError, as ``read_bytes`` does.
    """
    if path.protocol in LOCAL_PROTOCOLS:
        return _read_local(path.path, limit)
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
