"""What write-jobs has published to a queue, so a rerun after a kill publishes only the rest.

write-jobs publishes a job's pending tasks in plan order, a *span* of partitions at a
time, and after the queue has confirmed every message of a span it writes an empty
object ``published/<queue key>/<span>`` in the job root. A rerun lists that folder once
(about a hundred names, whatever the job's size) and skips the spans it names: a
write-jobs killed halfway through a 97k-partition job and rerun publishes again at
most the span that was in flight, about 1% of the job, instead of every unfinished
partition (each such duplicate may run its task a second time).

The log is kept per queue (its key is a hash of the queue URL): a rerun on another
queue publishes everything that is not done. ``--republish`` ignores it, for the rare
case of a queue that lost messages (purged, or deleted and made again).
Only write-jobs writes here; workers and status never read it.
"""

from __future__ import annotations

import hashlib
import math

from upath import UPath

from rslp.jobroot import JobRoot
from rslp.storage import listing, write_atomic

#: About this many spans a job: the most names a rerun lists, and 1/this the most it republishes.
SPANS_PER_JOB = 100
#: The smallest span, so a small job does not write one object per partition.
MIN_SPAN = 10


class PublishLog:
    """The spans of one job's partitions that write-jobs has published to one queue."""

    def __init__(self, job_root: UPath, queue_url: str, partition_count: int) -> None:
        key = hashlib.sha256(queue_url.encode()).hexdigest()[:16]
        self.folder = JobRoot(job_root).publish_log(key)
        self.span_size = max(MIN_SPAN, math.ceil(partition_count / SPANS_PER_JOB))

    def span_of(self, partition_index: int) -> int:
        """The span a partition belongs to."""
        return partition_index // self.span_size

    def published(self) -> set[int]:
        """The spans whose every task the queue confirmed (one listing)."""
        return {int(name) for name, _ in listing(self.folder) if name.isdigit()}

    def mark(self, span: int) -> None:
        """Record that every pending task of ``span`` is published (call only after the queue confirmed them)."""
        write_atomic(self.folder / str(span), "")
