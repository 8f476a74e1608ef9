"""What a reader of a whole job may take from its root: the plan's own tasks, and a bound on the plan.

Anyone who may write a job root can leave a header whose ``partition_count`` would make
a reader hold hundreds of millions of states, or markers for partitions the job does not
have. Status, history and fleet sizing read a job through these two functions: a header
over :data:`MAX_STATUS_PARTITIONS` is refused in one line before anything is listed, and
markers count only for the tasks the plan derives (so stray markers make no job look done).
"""

from __future__ import annotations

from rslp.errors import PermanentError
from rslp.jobroot.header import JOB_PARTITION, JobManifest
from rslp.jobroot.root import JobRoot
from rslp.task import task_id_for

#: The most partitions a job may have for ``rslp status`` and fleet sizing to read it: each
#: partition costs about 0.35 KB of memory per read (measured: 342 MB at 1M partitions and
#: six steps); twice the pipeline's default ``max_partitions``.
MAX_STATUS_PARTITIONS = 2_000_000


def planned_states(root: JobRoot, manifest: JobManifest, step: str) -> dict[str, str]:
    """``task_id -> state`` of ``step``'s marked tasks that the plan derives; markers of other ids count for nothing.

    The plan is the header's: partitions ``p<index>`` below its count (or the per-job
    partition for a per-job step), each task id the hash of job, partition and step.
    One marker listing, one hash per planned task.
    """
    marked = root.states(step)
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
