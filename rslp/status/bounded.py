"""Bounded reads for the read model: what status, history and fleet sizing take from a job root.

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

This module only reads.
"""

from __future__ import annotations

import json
from typing import Any

from upath import UPath

from rslp.errors import PermanentError
from rslp.jobroot import JOB_PARTITION, JobManifest, JobRoot
from rslp.storage import MARKER_LIMIT, JobFileError, read_bytes
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


def planned_states(ledger: JobRoot, manifest: JobManifest, step: str) -> dict[str, str]:
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
