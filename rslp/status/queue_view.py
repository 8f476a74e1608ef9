"""What a job's queue says about it, for ``rslp status``: per-topic backlogs and the job's dead letters.

Part of the read model (:mod:`rslp.status.model`); like it, this module only reads.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from rslp.errors import QueueResourceError
from rslp.jobroot import JobManifest
from rslp.queue import Queue, QueueCounts, dead_letter_name, open_queue
from rslp.queue.base import dead_letter_kind, dead_letter_reason
from rslp.task import TaskDecodeError, decode_task, task_id_for
from rslp.weather import CloudError

#: At most this many dead letters a topic are read to find the job's dead-lettered tasks.
MAX_DEAD_LETTER_READS = 1000
PUBSUB_BACKLOG_NOTE = "backlog n/a (Pub/Sub counts come from Cloud Monitoring)"


@dataclass
class Backlog:
    """One topic's subscription (same name): backlog, leased messages, oldest, dead letters."""

    topic: str
    steps: list[str]
    counts: QueueCounts | None
    dead_letters: int | None


@dataclass
class QueueView:
    """What the job's queue says: per-topic backlogs, and the job's tasks found among the dead letters.

    A task whose message was dead-lettered is dead whether or not a worker could write
    its dead marker (a worker that refuses a job root writes nothing under it), so the
    dead letters count as much as the markers do.
    """

    backlog: list[Backlog] = field(default_factory=list)
    note: str = ""
    #: task id -> (kind, reason) of this job's dead-lettered tasks.
    letters: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: per topic, dead letters that are not this job's tasks.
    foreign: Counter[str] = field(default_factory=Counter)
    #: False when a topic had more dead letters than status reads.
    complete: bool = True


def queue_view(manifest: JobManifest) -> QueueView:
    """Per topic: what the queue says (the embedded queue knows; Pub/Sub does not say), and the job's dead letters.

    The queue is opened read-only: a manifest may name any file, and looking never
    changes it (an embedded queue is read with SQLite's ``mode=ro``; on Pub/Sub the
    dead letters read are handed back at once).
    """
    topics: dict[str, list[str]] = {}
    for step in manifest.steps + manifest.job_steps:
        topics.setdefault(manifest.topics.get(step, "?"), []).append(step)
    url = manifest.queue
    if not url:
        return QueueView(note="the manifest names no queue")
    view, notes = QueueView(), []
    try:
        with open_queue(url, readonly=True) as q:
            for topic, steps in topics.items():
                counts = q.counts(topic)
                dead = q.counts(dead_letter_name(topic))
                view.backlog.append(
                    Backlog(topic, steps, counts, None if dead is None else dead.backlog + (dead.in_flight or 0))
                )
            if any(b.counts is None for b in view.backlog):
                notes.append(f"{PUBSUB_BACKLOG_NOTE}: {q.counts_note}")
            try:
                for b in view.backlog:
                    if b.dead_letters != 0:
                        _read_dead_letters(q, b.topic, manifest, view)
            except (QueueResourceError, CloudError) as e:
                notes.append(f"dead letters not read: {' '.join(str(e).split())}")
    except (QueueResourceError, ValueError) as e:
        notes.append(f"queue {url}: {' '.join(str(e).split())}")
    view.note = "; ".join(notes)
    return view


def _read_dead_letters(q: Queue, topic: str, manifest: JobManifest, view: QueueView) -> None:
    """Add ``topic``'s dead letters to ``view``: this job's tasks by id, the rest counted as foreign.

    A dead letter is whatever someone published: it counts as this job's task only if
    it decodes, names this job and step, and carries the id that job, partition and step
    hash to (a partition the job does not have never matches one of the job's tasks).
    """
    steps = set(manifest.steps + manifest.job_steps)
    letters = q.peek(dead_letter_name(topic), MAX_DEAD_LETTER_READS)
    view.complete &= len(letters) < MAX_DEAD_LETTER_READS
    for m in letters:
        try:
            task = decode_task(m.data)
        except (TaskDecodeError, RecursionError, ValueError, TypeError):
            task = None
        if (
            task is None
            or task.job_id != manifest.job_id
            or task.step not in steps
            or task.task_id != task_id_for(manifest.job_id, task.partition or "", task.step or "")
        ):
            view.foreign[topic] += 1
            continue
        view.letters[task.task_id] = (dead_letter_kind(m), " ".join(dead_letter_reason(m).split()))
