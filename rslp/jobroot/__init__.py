"""A job root on shared storage (local disk, gs://, Weka): its layout, its header and its markers.

:class:`JobRoot` owns every path and name under a job root; nothing else spells them::

    manifest.json                         the job's small header (:class:`JobManifest`): id,
                                          config, steps, topics, partition count (a few
                                          hundred bytes)
    records/<shard>.jsonl                 the partitions' records, PARTITIONS_PER_SHARD a
                                          shard, one JSON line each, in plan order
    markers/<step>/<task_id>.<state>.json one marker per task and state
                                          (:mod:`rslp.jobroot.markers`)
    claims/<step>/<task_id>.claim         the one worker running the task now
                                          (:mod:`rslp.worker.task_claim`)
    partitions/<partition>/               the partition's rslearn dataset
                                          (config.json, windows/)
    tiles/                                the tile store all partitions share
                                          (rslp.pipeline.tiles): each scene once
    partition_outputs/<postprocessor>/<partition>.<ext>
                                          each postprocessor's file per partition;
                                          combine starts when all of them exist
    fanin/<level>/<group>/<unit>          completion objects: how the last partition
    fanin/ready                           knows it is last (:mod:`rslp.pipeline.fanin`)
    published/<queue key>/<span>          what write-jobs has published to a queue, a span
                                          of partitions at a time (rslp.pipeline.publish_log)
    output/<postprocessor>.<ext>          the job's outputs (or the pipeline's output_dir)

A partition's id is ``p`` and its index in the plan (``p00042``), so the index, and
from it the shard and the line, comes from the id alone: a task reads the header and one
shard (about 50 kB), whatever the job's size, and never lists anything. The records
are written first and the header last: a job root with a header has every record, and
an interrupted write-jobs (no header yet) plans again from scratch.

A task's state is the most final marker it has (done > dead > failed > running).
Status reads all markers of a step with one listing, never one read per task.
A done marker is never deleted: it is the proof that a step's outputs exist, and the
worker writes it only after the work returned successfully. Only ``rslp dlq replay``
clears markers, and only a replayed task's ``dead`` and ``running`` ones (:meth:`JobRoot.clear`).

Marker and manifest reads and writes ride out a storage service's bad minutes
(:mod:`rslp.weather`): a 503 or a dropped connection is retried with backoff, not
turned into a failed task. How files are written and read (atomically, bounded) is
:mod:`rslp.storage`'s job.
"""

from rslp.jobroot.header import (
    FANIN_GROUP_SIZE,
    JOB_PARTITION,
    PARTITIONS_PER_SHARD,
    SHARD_BATCH,
    JobManifest,
    PartitionEntry,
    partition_id,
    partition_index,
)
from rslp.jobroot.markers import STATES, keep_most_final, marker_name, parse_marker_name
from rslp.jobroot.root import JobRoot, JobRootError

__all__ = [
    "FANIN_GROUP_SIZE",
    "JOB_PARTITION",
    "PARTITIONS_PER_SHARD",
    "SHARD_BATCH",
    "STATES",
    "JobManifest",
    "JobRoot",
    "JobRootError",
    "PartitionEntry",
    "keep_most_final",
    "marker_name",
    "parse_marker_name",
    "partition_id",
    "partition_index",
]
