"""A job's header (``manifest.json``) and partition records: what write-jobs writes once and every task reads.

A partition's id is ``p`` and its index in the plan (``p00042``), so the index, and
from it the shard and the line, comes from the id alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from rslp.task import TopicId

#: Partition records per shard object: a task reads one shard (about 50 kB at 100).
PARTITIONS_PER_SHARD = 100
#: Shards written to an object store at once (one concurrent batch, bounded memory).
SHARD_BATCH = 32
#: Units per fan-in group (:mod:`rslp.pipeline.fanin`): the most names one arrival lists.
FANIN_GROUP_SIZE = 100
#: The partition name of per-job steps (combine, observe), so every step takes the same flags.
JOB_PARTITION = "job"


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
