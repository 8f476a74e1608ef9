"""What every step needs from its job: the header, the partition's record, the pipeline config.

The job root's layout is :mod:`rslp.jobroot`'s (:class:`~rslp.jobroot.JobRoot`). Tasks
carry only ``--job_root`` and ``--partition`` (``job`` for per-job steps): everything
else is read from the header, the partition's own record and the pipeline config, so a
message stays small, a task can never disagree with its job, and what a task reads does
not grow with the job.

The order of the steps and their topics come from the header alone: write_jobs copies
them from the pipeline config once, and every task of the job follows the header, even
if pipeline.yaml is edited while the job runs (the worker's guard admits tasks by the
same header).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from upath import UPath

from rslp.errors import PermanentError
from rslp.jobroot import JOB_PARTITION, JobManifest, JobRoot, PartitionEntry
from rslp.pipeline.config import PipelineConfig, load_pipeline_config
from rslp.task import Downstream, Task

__all__ = ["JOB_PARTITION", "Job", "make_task"]


def make_task(job_id: str, job_root: str, step: str, partition: str) -> Task:
    """The task of ``step`` for ``partition`` (:data:`JOB_PARTITION` for per-job steps).

    Its id is deterministic: the same job, partition and step always give the same id.
    """
    args = ["--job_root", job_root, "--partition", partition]
    return Task(
        project="pipeline",
        workflow=step,
        args=args,
        job_id=job_id,
        job_root=job_root,
        partition=partition,
        step=step,
    )


@dataclass
class Job:
    """One job: its root, header and pipeline config (never all its partitions)."""

    root: UPath
    manifest: JobManifest
    config: PipelineConfig

    @classmethod
    def load(cls, job_root: str, manifest: JobManifest | None = None) -> Job:
        """The job with its header and the pipeline config it names (PermanentError if there is none).

        ``manifest``: the header as already read (the worker's guard read it to admit the
        task); None reads it here. The config is the process's (:func:`load_pipeline_config`).
        """
        if manifest is None:
            try:
                manifest = JobRoot(job_root).read_manifest()
            except FileNotFoundError as e:
                raise PermanentError(str(e)) from None
        job = cls(UPath(job_root), manifest, load_pipeline_config(manifest.config))
        # rslearn resolves ${RSLP_*} itself: its errors must not show them.
        job.config.remember_secrets(job.dataset_json)
        return job

    @functools.cached_property
    def dataset_json(self) -> Any:
        """The pipeline's dataset.json as read, once for this job object (one task).

        Never kept per process: a changed file or ``${RSLP_*}`` value is seen by the next task.
        """
        return self.config.read_dataset()

    def partition(self, partition_id: str) -> PartitionEntry:
        """``partition_id``'s record (one shard read; PermanentError if the job has no such partition)."""
        return JobRoot(self.root).partition(self.manifest, partition_id)

    def partition_index(self, partition_id: str) -> int:
        """``partition_id``'s index in the plan, from the id alone (PermanentError if the job has no such partition)."""
        return JobRoot(self.root).check_partition(self.manifest, partition_id)

    def partition_ids(self) -> Iterator[str]:
        """Every partition's id in plan order (reads nothing)."""
        return self.manifest.partition_ids()

    def partitions(self) -> Iterator[PartitionEntry]:
        """Every partition's record in plan order, streamed a shard at a time."""
        return JobRoot(self.root).partitions(self.manifest)

    def dataset_root(self, partition_id: str) -> UPath:
        """The partition's rslearn dataset (PermanentError if the job has no such partition)."""
        self.partition_index(partition_id)
        return JobRoot(self.root).dataset_root(partition_id)

    def dataset_config(self) -> dict[str, Any]:
        """The pipeline's rslearn dataset config, its tile store set to the job's shared one."""
        from rslp.pipeline.tiles import shared_tile_store_config

        config = self.config.load_dataset_config(raw=self.dataset_json)
        config["tile_store"] = shared_tile_store_config(JobRoot(self.root).tiles, config.get("tile_store"))
        return config

    def partition_output_dir(self, postprocessor: str) -> UPath:
        """Where ``postprocessor`` writes one file per partition."""
        return JobRoot(self.root).partition_output_dir(postprocessor)

    @property
    def output_dir(self) -> UPath:
        """Where combine writes the job's outputs."""
        if self.config.output_dir:
            return self.config.resolve(self.config.output_dir)
        return JobRoot(self.root).output_dir

    def output_paths(self) -> list[UPath]:
        """The job's outputs, one per postprocessor, in config order."""
        return [self.output_dir / f"{pp.name}{pp.suffix}" for pp in self.config.build_postprocessors()]

    def task(self, step: str, partition: str) -> Task:
        """The task of ``step`` for ``partition`` in this job."""
        return make_task(self.manifest.job_id, self.manifest.job_root, step, partition)

    def next_step(self, step: str) -> str | None:
        """The per-partition step after ``step`` in the header's order, or None after the last one."""
        steps = self.manifest.steps
        i = steps.index(step)
        return steps[i + 1] if i + 1 < len(steps) else None

    def downstream(self, step: str, partition: str) -> list[Downstream]:
        """The task to publish after ``step`` of ``partition``: its next per-partition step, if any."""
        following = self.next_step(step)
        if following is None:
            return []
        return [self.downstream_task(following, partition)]

    def downstream_task(self, step: str, partition: str) -> Downstream:
        """``step``'s task for ``partition``, on the topic the header names for it."""
        return Downstream(topic=self.manifest.topics[step], task=self.task(step, partition))
