"""Per-job state on shared storage (local disk, gs://, Weka): the manifest and task markers.

Layout under a job root::

    manifest.json                         the job's small header: id, config, steps,
                                          topics, partition count (a few hundred bytes)
    records/<shard>.jsonl                 the partitions' records, PARTITIONS_PER_SHARD a
                                          shard, one JSON line each, in plan order
    markers/<step>/<task_id>.<state>.json one marker per task and state

A partition's id is ``p`` and its index in the plan (``p00042``), so the index, and
from it the shard and the line, comes from the id alone: a task reads the header and one
shard (about 50 kB), whatever the job's size, and never lists anything. The records
are written first and the header last: a job root with a header has every record, and
an interrupted write-jobs (no header yet) plans again from scratch.

States are ``running`` (a worker started it), ``failed`` (the last failed attempt and
why), ``dead`` (dead-lettered, with the reason) and ``done`` (its outputs are durable;
it records the downstream tasks so a redelivered duplicate can republish them without
running again). A task's state is the most final marker it has: done > dead > failed >
running. Status reads all markers of a step with one listing, never one read per task.

A done marker is never deleted: it is the proof that a step's outputs exist, and the
worker writes it only after the work returned successfully. Only ``rslp dlq replay``
clears markers, and only a replayed task's ``dead`` and ``running`` ones (:meth:`Ledger.clear`).

Marker and manifest reads and writes ride out a storage service's bad minutes
(:mod:`rslp.weather`): a 503 or a dropped connection is retried with backoff, not
turned into a failed task.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from upath import UPath

from rslp import jobfile
from rslp.errors import PermanentError
from rslp.paths import PathEscapeError, under
from rslp.task import Downstream, Task, TopicId
from rslp.text import clip
from rslp.weather import STORAGE, CloudRefusedError, CloudUnavailableError, Weather

T = TypeVar("T")
STATES = ("running", "failed", "dead", "done")
#: Later states win when a task has several markers.
_RANK = {state: i for i, state in enumerate(STATES)}
#: Partition records per shard object: a task reads one shard (about 50 kB at 100).
PARTITIONS_PER_SHARD = 100
#: Shards written to an object store at once (one concurrent batch, bounded memory).
SHARD_BATCH = 32
#: Units per fan-in group (:mod:`rslp.pipeline.fanin`): the most names one arrival lists.
FANIN_GROUP_SIZE = 100
#: The partition name of per-job steps (combine, observe), so every step takes the same flags.
JOB_PARTITION = "job"


class JobRootError(PermanentError):
    """A marker in a job root cannot be written or read (a folder where a file belongs, a refused bucket...).

    The job root is named by a message, and whoever can write it can break it: the
    worker dead-letters the message with this one line rather than stopping.
    """


def is_local(path: UPath) -> bool:
    return path.protocol in ("", "file", "local")


def write_text_atomic(path: UPath, text: str) -> None:
    """Write text so that a reader never sees half a file (rename on local disk)."""
    if is_local(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(text)
        os.replace(tmp.path, path.path)
    else:  # object stores replace whole objects atomically
        path.write_text(text)


def write_json_atomic(path: UPath, payload: Any) -> None:
    """Write JSON so that a reader never sees half a file (rename on local disk)."""
    write_text_atomic(path, json.dumps(payload, indent=1, default=str))


def partition_id(index: int) -> str:
    """The id of the partition at ``index`` in the plan: ``p`` and the index (5 digits at least)."""
    return f"p{index:05d}"


def partition_index(pid: str) -> int:
    """The inverse of :func:`partition_id` (ValueError for an id it did not make)."""
    if not (pid[:1] == "p" and pid[1:].isdigit() and partition_id(int(pid[1:])) == pid):
        raise ValueError(f"{pid!r} is not a partition id (p and its index, like p00042)")
    return int(pid[1:])


class PartitionEntry(BaseModel):
    """One partition of a job: its id and its footprint in WGS84 (a GeoJSON geometry)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    geometry: dict[str, Any]
    #: The imagery period its windows ask for (see rslp.pipeline.timerange); None: any time.
    time_range: tuple[AwareDatetime, AwareDatetime] | None = None


class JobManifest(BaseModel):
    """The job's header, written once by write_jobs after its partition records.

    ``steps`` lists the per-partition steps in order; ``job_steps`` the per-job steps
    that follow them (combine, observe). ``topics`` maps each step to its topic.
    ``partition_count`` partitions ``p00000`` ... are in ``records/``, ``shard_size``
    a shard. The partitions themselves are never in the header: every task reads it.
    The shard and fan-in group sizes are recorded, not taken from the code, so a job
    keeps its layout while workers of another version run it.
    ``time_range`` is the ``--start``/``--end`` the job was written with (it overrides
    every feature's own range, and is part of the job's identity: a job root holds one
    period); each partition records the range its windows got.
    """

    model_config = ConfigDict(extra="forbid")

    job_id: str
    job_root: str
    config: str
    request: str
    queue: str | None = None
    created: float = Field(default_factory=time.time)
    steps: list[str]
    job_steps: list[str] = Field(default_factory=list)
    topics: dict[str, TopicId] = Field(default_factory=dict)
    time_range: tuple[AwareDatetime, AwareDatetime] | None = None
    partition_count: int = Field(default=0, ge=0)
    shard_size: int = Field(default=PARTITIONS_PER_SHARD, ge=1)
    fanin_group_size: int = Field(default=FANIN_GROUP_SIZE, ge=2)

    def partition_ids(self) -> Iterator[str]:
        """Every partition's id, in plan order, without reading anything."""
        return (partition_id(i) for i in range(self.partition_count))


class Ledger:
    """The manifest (header and partition records) and markers of one job root."""

    def __init__(self, job_root: str | os.PathLike[str] | UPath, weather: Weather | None = None) -> None:
        self.root = UPath(job_root)
        self.weather = weather or Weather()

    @property
    def manifest_path(self) -> UPath:
        return self.root / "manifest.json"

    def write_job(self, manifest: JobManifest, records: Iterable[dict[str, Any]]) -> JobManifest:
        """Write ``records`` as partitions p00000... shard by shard, then the header.

        A record is a ``geometry`` (GeoJSON, WGS84) and optionally a ``time_range``.
        Streams: at most :data:`SHARD_BATCH` shards are in memory at once. Returns the
        header as written (with its partition count).
        """
        size = manifest.shard_size
        count, lines, batch = 0, [], {}
        for record in records:
            lines.append(json.dumps({"id": partition_id(count), **record}, separators=(",", ":")))
            count += 1
            if len(lines) == size:
                batch[self.shard_path((count - 1) // size)] = "\n".join(lines) + "\n"
                lines = []
                if len(batch) == SHARD_BATCH:
                    self._write_shards(batch)
                    batch = {}
        if lines:
            batch[self.shard_path((count - 1) // size)] = "\n".join(lines) + "\n"
        self._write_shards(batch)
        header = manifest.model_copy(update={"partition_count": count})
        self.write_manifest(header)
        return header

    def _write_shards(self, batch: dict[UPath, str]) -> None:
        """Write whole shard objects: concurrently on an object store, atomically on local disk."""
        if not batch:
            return
        if is_local(self.root):
            for path, text in batch.items():
                write_text_atomic(path, text)
        else:
            self.root.fs.pipe({path.path: text.encode() for path, text in batch.items()})

    def write_manifest(self, manifest: JobManifest) -> None:
        payload = manifest.model_dump(mode="json")
        self._storage("write manifest", self.manifest_path, lambda: write_json_atomic(self.manifest_path, payload))

    def read_manifest(self) -> JobManifest:
        """The job's header (small: never the partitions)."""
        path = under(self.root, "manifest.json")  # never through a symlink out of the root

        def read() -> str:
            try:
                return jobfile.read_text(path, jobfile.HEADER_LIMIT)
            except FileNotFoundError:
                raise FileNotFoundError(f"{self.manifest_path}: no job manifest (is this a job root?)") from None

        text = self._storage("read manifest", self.manifest_path, read)
        try:
            return JobManifest.model_validate_json(text)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(top level)"
            older = " (a job root from before records/: rerun write-jobs into a new job root)"
            raise PermanentError(
                f"{self.manifest_path}: {where}: {first['msg']}{older if where == 'partitions' else ''}"
            ) from None

    def _storage(self, what: str, path: UPath, call: Callable[[], T]) -> T:
        return self.weather.call(call, what=what, resource=str(path), role=STORAGE)

    def _marker_io(self, what: str, path: UPath, call: Callable[[], T]) -> T:
        """A marker read or write; what is not the cloud's weather is a :class:`JobRootError`."""
        try:
            return self._storage(what, path, call)
        except CloudUnavailableError:
            raise  # the storage service's bad minutes, not the job root's content
        except (CloudRefusedError, OSError, ValueError, RecursionError, PermanentError) as e:
            raise JobRootError(clip(f"cannot {what} {path}: {e.__class__.__name__}: {e}")) from None

    def shard_path(self, shard: int) -> UPath:
        return self.root / "records" / f"{shard:05d}.jsonl"

    def check_partition(self, manifest: JobManifest, pid: str) -> int:
        """``pid``'s index in the plan, read from the id alone (PermanentError if the job has no such partition)."""
        try:
            index = partition_index(pid)
        except ValueError as e:
            raise PermanentError(f"{self.manifest_path}: {e}") from None
        if index >= manifest.partition_count:
            raise PermanentError(
                f"{self.manifest_path}: partition_count: no partition {pid!r} (the job has {manifest.partition_count})"
            )
        return index

    def partition(self, manifest: JobManifest, pid: str) -> PartitionEntry:
        """``pid``'s record: one shard read (PermanentError if the job has no such partition)."""
        index = self.check_partition(manifest, pid)
        shard = self._readable_shard(index // manifest.shard_size)
        try:
            line = jobfile.read_text(shard, jobfile.SHARD_LIMIT).split("\n")[index % manifest.shard_size]
        except (FileNotFoundError, IndexError):
            raise PermanentError(f"{shard}: no record for partition {pid!r} (the job root is damaged)") from None
        entry = PartitionEntry.model_validate_json(line)
        if entry.id != pid:
            raise PermanentError(f"{shard}: line {index % manifest.shard_size + 1} is {entry.id!r}, not {pid!r}")
        return entry

    def partitions(self, manifest: JobManifest) -> Iterator[PartitionEntry]:
        """Every partition's record in plan order, streamed one shard at a time."""
        shards = -(-manifest.partition_count // manifest.shard_size)
        for shard in range(shards):
            for line in jobfile.read_text(self._readable_shard(shard), jobfile.SHARD_LIMIT).splitlines():
                yield PartitionEntry.model_validate_json(line)

    def _readable_shard(self, shard: int) -> UPath:
        """A shard's path, proved not to lead out of the root through a symlink."""
        return under(self.root, "records", self.shard_path(shard).name)

    def marker_path(self, step: str, task_id: str, state: str) -> UPath:
        """``markers/<step>/<task_id>.<state>.json``, proved to lie under the job root."""
        return under(self.root, "markers", step, f"{task_id}.{state}.json")

    def mark(self, task: Task, state: str, **info: Any) -> None:
        """Write ``state``'s marker for ``task`` with ``info`` (worker, error, downstream...)."""
        if state not in _RANK:
            raise ValueError(f"unknown marker state {state!r}; expected one of {STATES}")
        payload = {"task": task.model_dump(mode="json"), "state": state, "time": time.time(), **info}
        try:
            path = self.marker_path(task.step or "task", task.task_id, state)
        except PathEscapeError as e:  # a symlink in the job root leads out of it
            raise JobRootError(f"cannot write marker: {e}") from None
        self._marker_io("write marker", path, lambda: write_json_atomic(path, payload))

    def read(self, task: Task, state: str) -> dict[str, Any] | None:
        path = self.marker_path(task.step or "task", task.task_id, state)

        def read() -> dict[str, Any] | None:
            try:
                return json.loads(jobfile.read_text(path, jobfile.MARKER_LIMIT))  # type: ignore[no-any-return]
            except FileNotFoundError:
                return None

        return self._marker_io("read marker", path, read)

    def clear(self, task: Task, *states: str) -> None:
        """Delete ``task``'s markers of ``states`` (never ``done``); missing ones are fine."""
        if "done" in states:
            raise ValueError("done markers are never deleted: they prove a step's outputs exist")
        for state in states:
            self.marker_path(task.step or "task", task.task_id, state).unlink(missing_ok=True)

    def done_downstream(self, task: Task) -> list[Downstream] | None:
        """The downstream tasks recorded by ``task``'s done marker, or None if not done."""
        marker = self.read(task, "done")
        if marker is None:
            return None
        return [Downstream.model_validate(d) for d in marker.get("downstream", [])]

    def steps(self) -> list[str]:
        base = self.root / "markers"
        return sorted(p.name for p in base.iterdir()) if base.exists() else []

    def states(self, step: str) -> dict[str, str]:
        """``task_id -> state`` for every task of ``step`` that has a marker (one listing)."""
        out: dict[str, str] = {}
        base = self.root / "markers" / step
        base.fs.invalidate_cache(base.path)  # fsspec keeps listings per process: a watcher must see new markers
        if not base.exists():
            return out
        for name in _names(base.iterdir()):
            task_id, _, rest = name.partition(".")
            state = rest.removesuffix(".json")
            if state in _RANK and (task_id not in out or _RANK[state] > _RANK[out[task_id]]):
                out[task_id] = state
        return out


def _names(paths: Iterable[UPath]) -> Iterable[str]:
    for p in paths:
        if not p.name.startswith("."):
            yield p.name
