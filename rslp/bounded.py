"""Bounded reads of a job root: what status, history, fleet sizing and the rolling catalog take from it.

Anyone who may write a job root can leave files there that a careless reader chokes
on: a marker nested 100,000 levels deep (``json`` raises RecursionError), a huge or
endless file, a FIFO, a JSON list where an object belongs, or a header whose
``partition_count`` would make a reader hold hundreds of millions of states. The
readers here never die of these: a file is read only if it is a regular file, at most
:data:`MAX_MARKER_BYTES` of it, and parsed into a JSON object or refused with a
one-line :class:`UnreadableFile` that the caller turns into a note; a header over
:data:`MAX_STATUS_PARTITIONS` is refused in one line before anything is listed; and
markers count only for the tasks the job's plan derives (:func:`planned_states`), so
markers for partitions a job does not have make no job look done.

Marker folders are listed with their modification times by :func:`listing` (one
listing a step, never one read a task); :func:`newest_marker` is when a step last moved.

This module only reads. It sits below the pipeline and status (both read job roots), so
neither has to import the other for it.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from upath import UPath

from rslp.errors import PermanentError
from rslp.jobfile import MARKER_LIMIT, JobFileError, read_bytes
from rslp.ledger import JOB_PARTITION, JobManifest, Ledger, is_local
from rslp.task import task_id_for

#: The largest marker (or observe.json) a status reader parses; the worker's are a few KB.
MAX_MARKER_BYTES = MARKER_LIMIT
#: The most partitions a job may have for ``rslp status`` and fleet sizing to read it: each
#: partition costs about 0.35 KB of memory per read (measured: 342 MB at 1M partitions and
#: six steps); twice the pipeline's default ``max_partitions``.
MAX_STATUS_PARTITIONS = 2_000_000


class UnreadableFile(ValueError):
    """A job-root file that is not a regular file of bounded size holding a JSON object; says which and why."""


def read_json_object(path: UPath) -> dict[str, Any]:
    """The JSON object in ``path``; FileNotFoundError if there is none, :class:`UnreadableFile` if it is bad."""
    try:
        data = read_bytes(path, MAX_MARKER_BYTES)
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


def planned_states(ledger: Ledger, manifest: JobManifest, step: str) -> dict[str, str]:
    """``task_id -> state`` of ``step``'s marked tasks that the plan derives; markers of other ids count for nothing.

    The plan is the header's: partitions ``p<index>`` below its count (or the per-job
    partition for a per-job step), each task id the hash of job, partition and step.
    One marker listing, one hash per planned task.
    """
    marked = ledger.states(step)
    partitions = [JOB_PARTITION] if step in manifest.job_steps else manifest.partition_ids()
    planned = (task_id_for(manifest.job_id, partition, step) for partition in partitions)
    return {task_id: marked[task_id] for task_id in planned if task_id in marked}


def check_partition_count(manifest: JobManifest, job_root: str) -> None:
    """PermanentError in one line if the header claims more partitions than a status reader may hold."""
    if manifest.partition_count > MAX_STATUS_PARTITIONS:
        raise PermanentError(
            f"{job_root}: the job header says partition_count: {manifest.partition_count:,}, over the "
            f"{MAX_STATUS_PARTITIONS:,} partitions status and fleet sizing read; is manifest.json the one "
            "write-jobs wrote?"
        )


def newest_marker(root: UPath, step: str) -> float | None:
    """When ``step``'s newest marker was written (one listing, a stat per marker on local disk)."""
    return max((t for _, modified in listing(root / "markers" / step) if (t := modified()) is not None), default=None)


def listing(base: UPath) -> Iterator[tuple[str, Callable[[], float | None]]]:
    """(name, a function giving its modification time) for each entry of ``base``; nothing if it is missing.

    On local disk this is ``os.scandir``, whose entries stat lazily: fsspec's local
    listing builds a dict per entry, and that was most of status's time at 600k
    markers. Elsewhere it is one paginated listing with details (GCS returns the
    times with the names).
    """
    if is_local(base):
        try:
            with os.scandir(base.path) as it:
                for entry in it:
                    yield entry.name, functools.partial(_stat_mtime, entry)
        except FileNotFoundError:
            return
        return
    # fsspec caches listings per process: without this, `status --watch` on gs:// redraws its first view forever.
    base.fs.invalidate_cache(base.path)
    try:
        entries = base.fs.ls(base.path, detail=True)
    except FileNotFoundError:
        return
    for info in entries:
        yield str(info["name"]).rstrip("/").rsplit("/", 1)[-1], functools.partial(_modified, info)


def _stat_mtime(entry: os.DirEntry[str]) -> float:
    return entry.stat().st_mtime


def _modified(info: dict[str, Any]) -> float | None:
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
