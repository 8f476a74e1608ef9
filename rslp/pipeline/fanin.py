"""Fan-in: how the last partition to finish learns that the job is ready for combine.

The job's partitions are the leaves of a tree of groups (of the header's
``fanin_group_size``, 100 by default; GCS lists 1,000 names a call); a
completion object per finished unit lives under its group's folder::

    fanin/<level>/<group>/<unit>      empty; <unit> is a partition index at level 0,
                                      a group index of the level below above it

A partition's postprocess, once its outputs exist, arrives (:func:`arrive`): it writes its
level-0 object and lists its group's folder (at most a group's names: one list call
on GCS). If the group is complete, the group itself has arrived one level up, and so on;
whoever completes the top group asks for combine. A task does O(group size) work at
most a few levels (three at 100k partitions), so the whole job does O(N), and no
object is written by more than the units of one group.

Why it is race-free: every arrival writes before it lists, and listings are strongly
consistent (local disk; GCS lists after writes), so of the last units of a group to
arrive, at least the one that lists last sees all of them. Two may see it; of those
that see the whole job complete, only the partition whose index the create-only
object ``fanin/ready`` holds asks for combine, so two workers never run it at once.
A task killed after writing its objects (or its claim) but before returning has no
done marker, so it is redelivered and arrives again (its own claim answers True);
one killed after its done marker is republished from the marker's recorded
downstream by the worker. Either way combine is asked for, and never before every
partition's outputs exist (objects are written after them).
"""

from __future__ import annotations

from upath import UPath

from rslp.jobroot import JobRoot
from rslp.storage import create_only, listing, write_atomic


def arrive(root: UPath, partition_count: int, index: int, group_size: int) -> bool:
    """Record that partition ``index`` of ``partition_count`` is finished; True if the job now is.

    Idempotent: arriving again rewrites the same objects and answers the same or True.
    """
    if not 0 <= index < partition_count:
        raise ValueError(f"partition index {index} is outside the job's {partition_count} partitions")
    job = JobRoot(root)
    units, level, unit = partition_count, 0, index
    while units > 1:
        group = unit // group_size
        members = min(group_size, units - group * group_size)
        write_atomic(job.fanin_unit(level, group, unit), "")
        if arrived(job.fanin_folder(level, group)) < members:
            return False
        units, level, unit = -(-units // group_size), level + 1, group
    return _claim_combine(job.fanin_ready, index)


def _claim_combine(ready: UPath, index: int) -> bool:
    """True for the one partition whose index ``ready`` holds: it creates the object, or created it before."""
    return create_only(ready, str(index).encode()) or ready.read_text().strip() == str(index)


def arrived(folder: UPath) -> int:
    """How many units have a completion object in ``folder`` (one listing, never a cached one)."""
    return sum(1 for name, _ in listing(folder) if name.isdigit())
