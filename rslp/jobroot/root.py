"""The one object that knows a job root's layout: :class:`JobRoot` (the drawing is in :mod:`rslp.jobroot`)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from pydantic import ValidationError
from upath import UPath

from rslp import storage
from rslp.errors import PermanentError, describe, typed
from rslp.jobroot.header import SHARD_BATCH, JobManifest, PartitionEntry, partition_id, partition_index
from rslp.jobroot.markers import check_state, keep_most_final, marker_name, parse_marker_name
from rslp.paths import PathEscapeError, under
from rslp.task import Downstream, Task
from rslp.text import clip
from rslp.weather import STORAGE, CloudRefusedError, CloudUnavailableError, Weather

T = TypeVar("T")


class JobRootError(PermanentError):
    """A marker in a job root cannot be written or read (a folder where a file belongs, a refused bucket...).

    The job root is named by a message, and whoever can write it can break it: the
    worker dead-letters the message with this one line rather than stopping.
    """


class JobRoot:
    """One job root: every path and name under it, its header and records, and its markers."""

    def __init__(self, job_root: str | os.PathLike[str] | UPath, weather: Weather | None = None) -> None:
        self.root = UPath(job_root)
        self.weather = weather or Weather()

    # -- the layout ---------------------------------------------------------------------

    @property
    def manifest_path(self) -> UPath:
        return self.root / "manifest.json"

    def shard_path(self, shard: int) -> UPath:
        return self.root / "records" / f"{shard:05d}.jsonl"

    def marker_folder(self, step: str) -> UPath:
        """``markers/<step>/``: every marker of ``step``, listed at once by status and the worker."""
        return self.root / "markers" / step

    def marker_path(self, step: str, task_id: str, state: str) -> UPath:
        """``markers/<step>/<task_id>.<state>.json``, proved to lie under the job root."""
        return under(self.root, "markers", step, marker_name(task_id, state))

    def claim_path(self, step: str, task_id: str) -> UPath:
        """``claims/<step>/<task_id>.claim``: the one worker running the task (:mod:`rslp.worker.task_claim`)."""
        return under(self.root, "claims", step, f"{task_id}.claim")

    def dataset_root(self, pid: str) -> UPath:
        """``partitions/<pid>/``: the partition's rslearn dataset, proved to lie under the job root."""
        return under(self.root, "partitions", pid)

    @property
    def tiles(self) -> UPath:
        """``tiles/``: the tile store every partition shares (:mod:`rslp.pipeline.tiles`)."""
        return self.root / "tiles"

    def partition_output_dir(self, postprocessor: str) -> UPath:
        """``partition_outputs/<postprocessor>/``: where ``postprocessor`` writes one file per partition."""
        return self.root / "partition_outputs" / postprocessor

    def partition_output(self, postprocessor: str, pid: str, suffix: str) -> UPath:
        """``partition_outputs/<postprocessor>/<pid><suffix>``: one partition's file of ``postprocessor``."""
        return self.partition_output_dir(postprocessor) / f"{pid}{suffix}"

    def fanin_folder(self, level: int, group: int) -> UPath:
        """``fanin/<level>/<group>/``: the completion objects of one fan-in group (:mod:`rslp.pipeline.fanin`)."""
        return self.root / "fanin" / str(level) / f"{group:06d}"

    def fanin_unit(self, level: int, group: int, unit: int) -> UPath:
        """``fanin/<level>/<group>/<unit>``: the empty object that says ``unit`` has arrived."""
        return self.fanin_folder(level, group) / f"{unit:06d}"

    @property
    def fanin_ready(self) -> UPath:
        """``fanin/ready``: the create-only object naming the one partition that asks for combine."""
        return self.root / "fanin" / "ready"

    def publish_log(self, queue_key: str) -> UPath:
        """``published/<queue_key>/``: what write-jobs has published to one queue (:mod:`rslp.pipeline.publish_log`)."""
        return self.root / "published" / queue_key

    @property
    def output_dir(self) -> UPath:
        """``output/``: the job's outputs, unless the pipeline names its own ``output_dir``."""
        return self.root / "output"

    # -- header and records -------------------------------------------------------------

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
        if storage.is_local(self.root):
            for path, text in batch.items():
                storage.write_atomic(path, text)
        else:
            self.root.fs.pipe({path.path: text.encode() for path, text in batch.items()})

    def write_manifest(self, manifest: JobManifest) -> None:
        payload = manifest.model_dump(mode="json")
        self._storage(
            "write manifest", self.manifest_path, lambda: storage.write_json_atomic(self.manifest_path, payload)
        )

    def read_manifest(self) -> JobManifest:
        """The job's header (small: never the partitions)."""
        path = under(self.root, "manifest.json")  # never through a symlink out of the root

        def read() -> str:
            try:
                return storage.read_text(path, storage.HEADER_LIMIT)
            except FileNotFoundError:
                raise FileNotFoundError(f"{self.manifest_path}: no job manifest (is this a job root?)") from None

        text = self._storage("read manifest", self.manifest_path, read)
        try:
            return JobManifest.model_validate_json(text)
        except ValidationError as e:
            older = any(p["loc"][:1] == ("partitions",) for p in e.errors())
            hint = " (a job root from before records/: rerun write-jobs into a new job root)" if older else ""
            raise PermanentError(f"{self.manifest_path}: {describe(e, 'the job header')}{hint}") from None

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
            line = storage.read_text(shard, storage.SHARD_LIMIT).split("\n")[index % manifest.shard_size]
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
            for line in storage.read_text(self._readable_shard(shard), storage.SHARD_LIMIT).splitlines():
                yield PartitionEntry.model_validate_json(line)

    def _readable_shard(self, shard: int) -> UPath:
        """A shard's path, proved not to lead out of the root through a symlink."""
        return under(self.root, "records", self.shard_path(shard).name)

    # -- markers ------------------------------------------------------------------------

    def mark(self, task: Task, state: str, **info: Any) -> None:
        """Write ``state``'s marker for ``task`` with ``info`` (worker, error, downstream...)."""
        check_state(state)
        payload = {"task": task.model_dump(mode="json"), "state": state, "time": time.time(), **info}
        try:
            path = self.marker_path(task.step or "task", task.task_id, state)
        except PathEscapeError as e:  # a symlink in the job root leads out of it
            raise JobRootError(f"cannot write marker: {e}") from None
        self.guarded_io("write marker", path, lambda: storage.write_json_atomic(path, payload))

    def read(self, task: Task, state: str) -> dict[str, Any] | None:
        path = self.marker_path(task.step or "task", task.task_id, state)

        def read() -> dict[str, Any] | None:
            try:
                return json.loads(storage.read_text(path, storage.MARKER_LIMIT))  # type: ignore[no-any-return]
            except FileNotFoundError:
                return None

        return self.guarded_io("read marker", path, read)

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
        """The steps that have markers."""
        return sorted(name for name, _ in storage.listing(self.root / "markers"))

    def states(self, step: str) -> dict[str, str]:
        """``task_id -> state`` for every task of ``step`` that has a marker (one listing)."""
        out: dict[str, str] = {}
        for name, _ in storage.listing(self.marker_folder(step)):
            if (parsed := parse_marker_name(name)) is not None:
                keep_most_final(out, *parsed)
        return out

    def newest_marker(self, step: str) -> float | None:
        """When ``step``'s newest marker was written (one listing, a stat per marker on local disk)."""
        times = (
            modified()
            for name, modified in storage.listing(self.marker_folder(step))
            if parse_marker_name(name) is not None
        )
        return max((t for t in times if t is not None), default=None)

    # -- storage calls ------------------------------------------------------------------

    def _storage(self, what: str, path: UPath, call: Callable[[], T]) -> T:
        return self.weather.call(call, what=what, resource=str(path), role=STORAGE)

    def guarded_io(self, what: str, path: UPath, call: Callable[[], T]) -> T:
        """A read or write of the job root's own files (markers, claims), with the store's weather ridden out.

        Anything else is the job root's fault: a :class:`JobRootError`, the message's, not the worker's.
        """
        try:
            return self._storage(what, path, call)
        except CloudUnavailableError:
            raise  # the storage service's bad minutes, not the job root's content
        except (CloudRefusedError, OSError, ValueError, RecursionError, PermanentError) as e:
            raise JobRootError(clip(f"cannot {what} {path}: {typed(e)}")) from None
