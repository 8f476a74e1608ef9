"""Per-job state on shared storage (local disk, gs://, Weka): the manifest and task markers.

Layout under a job root::

    manifest.json                         what the job is: id, config, partitions, steps
    markers/<step>/<task_id>.<state>.json one marker per task and state

States are ``running`` (a worker started it), ``failed`` (the last failed attempt and
why), ``dead`` (dead-lettered, with the reason) and ``done`` (its outputs are durable;
it records the downstream tasks so a redelivered duplicate can republish them without
running again). A task's state is the most final marker it has: done > dead > failed >
running. Status reads all markers of a step with one listing, never one read per task.

A done marker is never deleted: it is the proof that a step's outputs exist, and the
worker writes it only after the work returned successfully. Only ``rslp dlq replay``
clears markers, and only a replayed task's ``dead`` and ``running`` ones (:meth:`Ledger.clear`).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from upath import UPath

from rslp.task import Downstream, Task

STATES = ("running", "failed", "dead", "done")
#: Later states win when a task has several markers.
_RANK = {state: i for i, state in enumerate(STATES)}


def write_json_atomic(path: UPath, payload: Any) -> None:
    """Write JSON so that a reader never sees half a file (rename on local disk)."""
    text = json.dumps(payload, indent=1, default=str)
    if path.protocol in ("", "file", "local"):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(text)
        os.replace(tmp.path, path.path)
    else:  # object stores replace whole objects atomically
        path.write_text(text)


class PartitionEntry(BaseModel):
    """One partition of a job: its id and its footprint in WGS84 (a GeoJSON geometry)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    geometry: dict[str, Any]
    windows: int | None = None
    #: The imagery period its windows ask for (see rslp.pipeline.timerange); None: any time.
    time_range: tuple[AwareDatetime, AwareDatetime] | None = None


class JobManifest(BaseModel):
    """What a job is, written once by write_jobs: status and the map read it back.

    ``steps`` lists the per-partition steps in order; ``job_steps`` the per-job steps
    that follow them (combine, observe). ``topics`` maps each step to its topic.
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
    topics: dict[str, str] = Field(default_factory=dict)
    partitions: list[PartitionEntry]
    time_range: tuple[AwareDatetime, AwareDatetime] | None = None


class Ledger:
    """The manifest and markers of one job root."""

    def __init__(self, job_root: str | os.PathLike[str]) -> None:
        self.root = UPath(job_root)

    @property
    def manifest_path(self) -> UPath:
        return self.root / "manifest.json"

    def write_manifest(self, manifest: JobManifest) -> None:
        write_json_atomic(self.manifest_path, manifest.model_dump(mode="json"))

    def read_manifest(self) -> JobManifest:
        if not self.manifest_path.exists():
            raise FileNotFoundError(f"{self.manifest_path}: no job manifest (is this a job root?)")
        return JobManifest.model_validate_json(self.manifest_path.read_text())

    def marker_path(self, step: str, task_id: str, state: str) -> UPath:
        return self.root / "markers" / step / f"{task_id}.{state}.json"

    def mark(self, task: Task, state: str, **info: Any) -> None:
        """Write ``state``'s marker for ``task`` with ``info`` (worker, error, downstream...)."""
        if state not in _RANK:
            raise ValueError(f"unknown marker state {state!r}; expected one of {STATES}")
        payload = {"task": task.model_dump(mode="json"), "state": state, "time": time.time(), **info}
        write_json_atomic(self.marker_path(task.step or "task", task.task_id, state), payload)

    def read(self, task: Task, state: str) -> dict[str, Any] | None:
        path = self.marker_path(task.step or "task", task.task_id, state)
        try:
            return json.loads(path.read_text())  # type: ignore[no-any-return]
        except FileNotFoundError:
            return None

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
