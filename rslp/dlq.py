"""``rslp dlq list|show|replay``: dead-lettered tasks, why they died, and replaying them after a fix.

The dead letters of subscription ``S`` are on subscription ``S-dead-letter``. Listing
and showing never remove anything: they read the dead letters where they lie (the
embedded queue's file opened read-only; on Pub/Sub each is pulled under a short lease
and handed back before the command returns).

Replay republishes the chosen tasks to ``S``'s topic with the same task id, ``attempt``
reset to 0 and no ``not_before``, waits until the queue confirms the publish, removes
the task's stale ``dead`` and ``running`` markers (so ``rslp status`` shows it as
queued, or as failed when earlier attempts failed, until a worker takes it), and only
then acks the dead letter. A crash in between leaves a duplicate task, which the
worker's done-marker check absorbs, never a lost one. Several dead letters of one task
(a duplicated message) are replayed once.

A dead letter is whatever someone published, so these tools treat it as data: it is
replayed to the subscription being read (never to one its attributes name), markers
are read or cleared only under the ``--job_root`` the operator gave, a message that
does not decode is listed as such, every pulled dead letter is handed back however
the command ends, and every control character is escaped before it reaches the
terminal.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rslp.console import duration, printable, table
from rslp.errors import QueueResourceError
from rslp.jobroot import JobRoot
from rslp.queue import Outgoing, Queue, Received, dead_letter_name, open_queue
from rslp.queue.base import DEAD_LETTER_ATTEMPTS, DEAD_LETTER_TRACEBACK, dead_letter_kind, dead_letter_reason
from rslp.queue.choice import queue_to_act_on
from rslp.storage import absolute
from rslp.task import Task, TaskDecodeError, decode_task

#: How long listed dead letters stay invisible to others before they are handed back.
PEEK_LEASE = 120.0
#: At most this many dead letters a subscription are listed.
MAX_LISTED = 10_000
#: Markers a replayed task no longer has: it is neither dead nor running any more.
STALE_MARKERS = ("dead", "running")


@dataclass
class DeadLetter:
    """One dead-lettered message under our lease, with what the worker recorded about it."""

    message: Received
    source: str
    task: Task | None

    @property
    def id(self) -> str:
        """The task id, or ``message:ID`` for a message that is not a task."""
        return self.task.task_id if self.task else f"message:{self.message.message_id}"

    @property
    def reason(self) -> str:
        return dead_letter_reason(self.message)

    @property
    def kind(self) -> str:
        return dead_letter_kind(self.message)

    @property
    def attempts(self) -> str:
        attrs = self.message.attributes
        return attrs.get(DEAD_LETTER_ATTEMPTS) or attrs.get("CloudPubSubDeadLetterSourceDeliveryCount") or "?"

    def matches(self, ids: list[str]) -> bool:
        """Whether this is one of ``ids`` (task ids, or their first characters, or message ids)."""
        return any(
            self.id.startswith(i) or i in (self.message.message_id, f"message:{self.message.message_id}") for i in ids
        )


def _target(
    job_root: str | None, queue: str | None, subscription: str | None, acting: str | None = None
) -> tuple[str, list[str]]:
    """The queue URL and source subscriptions: from the flags, else from the job's manifest.

    ``acting``: the command, when it changes the queue: then a queue only the manifest
    names must be named with --queue (:mod:`rslp.queue.choice`).
    """
    subs = [s for s in (subscription or "").split(",") if s]
    if job_root:
        manifest = JobRoot(job_root).read_manifest()
        queue = queue_to_act_on(job_root, manifest.queue, queue, acting) if acting else queue or manifest.queue
        if not subs:
            subs = list(dict.fromkeys(manifest.topics[s] for s in manifest.steps + manifest.job_steps))
    if not queue or not subs:
        raise ValueError("give --job_root, or --queue and --subscription")
    return queue, subs


class _Peek:
    """Every dead letter of ``subscriptions``, held under a lease; on exit, what was not acked is handed back."""

    def __init__(self, q: Queue, subscriptions: list[str], lease: float = PEEK_LEASE) -> None:
        self.queue = q
        self.letters: list[DeadLetter] = []
        self._pulled: list[Received] = []
        self._acked: set[int] = set()
        try:
            for sub in subscriptions:
                q.topic_of(sub)  # a missing subscription: one line naming the command that creates it
                _has_dead_letters(q, sub)
                while batch := q.pull(dead_letter_name(sub), lease, max_messages=100, wait=2.0):
                    self._pulled += batch  # handed back on exit, even if something below fails
                    # The source is the subscription being read: a sender can set any attribute.
                    self.letters += [DeadLetter(m, sub, _decode(m)) for m in batch]
        except BaseException:
            self.__exit__()
            raise

    def ack(self, letter: DeadLetter) -> None:
        self.queue.ack(letter.message)
        self._acked.add(id(letter.message))

    def __enter__(self) -> _Peek:
        return self

    def __exit__(self, *exc: object) -> None:
        for m in self._pulled:
            if id(m) not in self._acked:
                self.queue.nack(m)


def _look(q: Queue, subscriptions: list[str]) -> list[DeadLetter]:
    """Every dead letter of ``subscriptions``, read where it lies (list and show change nothing)."""
    letters: list[DeadLetter] = []
    for sub in subscriptions:
        q.topic_of(sub)  # a missing subscription: one line naming the command that creates it
        _has_dead_letters(q, sub)
        # The source is the subscription being read: a sender can set any attribute.
        letters += [DeadLetter(m, sub, _decode(m)) for m in q.peek(dead_letter_name(sub), MAX_LISTED)]
    return letters


def _has_dead_letters(q: Queue, subscription: str) -> None:
    """A ValueError (a usage error) if ``subscription`` exists but has no dead-letter subscription yet."""
    from rslp.weather import CloudRefusedError

    try:
        q.topic_of(dead_letter_name(subscription))
    except QueueResourceError as e:
        if isinstance(e, CloudRefusedError) and not _not_found(e.__cause__):
            raise  # refused, not missing: the error names the role
        raise ValueError(
            f"subscription {subscription} has no dead letters: {dead_letter_name(subscription)} does not exist "
            f"(a worker creates it when it starts, or run `rslp setup --queue QUEUE --subscription {subscription}`)"
        ) from None


def _not_found(e: BaseException | None) -> bool:
    from google.api_core.exceptions import NotFound

    return isinstance(e, NotFound)


def _decode(message: Received) -> Task | None:
    """The task, or None for anything that is not one (listed as "(not a task)")."""
    try:
        return decode_task(message.data)
    except (TaskDecodeError, RecursionError, ValueError, TypeError):
        return None


def _own_job(task: Task | None, job_root: str | None) -> bool:
    """Whether ``task`` belongs to the job root the operator named (markers elsewhere are never touched)."""
    if task is None or not task.job_root or not job_root:
        return False
    return _normal(task.job_root) == _normal(job_root)


def _normal(root: str) -> str:
    return os.path.normpath(absolute(root))


def _select(
    letters: list[DeadLetter], task_ids: str | None, reason: str | None, everything: bool = False
) -> list[DeadLetter]:
    ids = [i.strip() for i in (task_ids or "").split(",") if i.strip()]
    if not (ids or reason or everything):
        return letters
    return [
        d for d in letters if (not ids or d.matches(ids)) and (reason is None or reason.lower() in d.reason.lower())
    ]


def _cut(d: DeadLetter, width: int) -> str:
    """The reason, or its first ``width`` characters and "..." where it is longer (a cut never passes for whole)."""
    return d.reason if len(d.reason) <= width else d.reason[: max(0, width - 3)] + "..."


def _where(d: DeadLetter) -> str:
    if d.task is None:
        return "(not a task)"
    if d.task.step:
        return f"{d.task.step} {d.task.partition or ''}".strip()
    return " ".join(d.task.args)[:40]


def _age(d: DeadLetter) -> str:
    published = d.message.publish_time
    return "-" if published is None else duration((datetime.now(UTC) - published).total_seconds())


def dlq_list(
    job_root: str | None = None,
    queue: str | None = None,
    subscription: str | None = None,
    reason: str | None = None,
    width: int = 300,
) -> list[DeadLetter]:
    """List dead-lettered tasks with their reasons (nothing is removed).

    Args:
        job_root: a job root; its manifest gives the queue and subscriptions.
        queue: pubsub://PROJECT_ID or local://PATH.db (default: the job's).
        subscription: source subscriptions, comma-separated (default: the job's topics).
        reason: only dead letters whose reason contains this (case-insensitive).
        width: cut longer reasons to this many characters, ending in "..." (rslp dlq show prints them whole).
    """
    url, subs = _target(job_root, queue, subscription)
    with open_queue(url, readonly=True) as q:
        chosen = _select(_look(q, subs), None, reason)
        rows = [
            [d.id, d.source, d.task.name if d.task else "-", _where(d), d.kind, d.attempts, _age(d), _cut(d, width)]
            for d in chosen
        ]
        if not rows:
            print("no dead letters" + (f" matching {reason!r}" if reason else ""))
            return chosen
        headers = ["task id", "subscription", "workflow", "step / args", "kind", "attempts", "age", "reason"]
        print(table(headers, rows, "lllllrrl"))
        by_reason = Counter(_cut(d, width) for d in chosen)
        print(f"\n{len(chosen)} dead letters on {', '.join(subs)}; by reason:")
        print(table(["count", "reason"], [(n, r) for r, n in by_reason.most_common()], "rl"))
        return chosen


def dlq_show(
    task_id: str, job_root: str | None = None, queue: str | None = None, subscription: str | None = None
) -> None:
    """Show dead-lettered tasks in full: the task, every attribute, and the ledger's traceback.

    Args:
        task_id: the task id (or its first characters, or the message id) from rslp dlq list.
        job_root: a job root; its manifest gives the queue and subscriptions, and the
            traceback is read from its markers only.
        queue: pubsub://PROJECT_ID or local://PATH.db (default: the job's).
        subscription: source subscriptions, comma-separated (default: the job's topics).
    """
    url, subs = _target(job_root, queue, subscription)
    with open_queue(url, readonly=True) as q:
        chosen = _select(_look(q, subs), task_id, None)
        if not chosen:
            raise ValueError(f"no dead letter with task or message id {task_id!r} on {', '.join(subs)}")
        for d in chosen:
            print(
                printable(
                    f"task {d.id}  (message {d.message.message_id} on {dead_letter_name(d.source)}, age {_age(d)})"
                )
            )
            for key, value in sorted(d.message.attributes.items()):
                if key != DEAD_LETTER_TRACEBACK:
                    print(printable(f"  {key}: {value}"))
            body = _body(d)
            print("  message:", json.dumps(body, indent=2).replace("\n", "\n  "))
            marker = JobRoot(job_root or "").read(d.task, "dead") if d.task and _own_job(d.task, job_root) else None
            traceback = str((marker or {}).get("traceback") or d.message.attributes.get(DEAD_LETTER_TRACEBACK) or "")
            if traceback:
                print(printable("  traceback:\n    " + traceback.rstrip().replace("\n", "\n    ")))
            print()


def dlq_replay(
    job_root: str | None = None,
    queue: str | None = None,
    subscription: str | None = None,
    task_ids: str | None = None,
    reason: str | None = None,
    all: bool = False,
    dry_run: bool = False,
) -> list[str]:
    """Republish dead-lettered tasks after a fix: same task ids, attempts reset to 0.

    Choose with --task_ids and/or --reason (both must match), or --all. Each chosen
    task goes back to the topic its subscription pulls from; its dead letter is acked
    only once that publish is confirmed.

    Args:
        job_root: a job root; its manifest gives the subscriptions, and only its tasks'
            markers are cleared (a dead letter's own job_root is never trusted).
        queue: pubsub://PROJECT_ID or local://PATH.db; needed with --job_root unless the
            job's queue is its own embedded queue on this machine (a manifest cannot choose
            the queue a replay publishes to).
        subscription: source subscriptions, comma-separated (default: the job's topics).
        task_ids: comma-separated task ids (or their first characters) from rslp dlq list.
        reason: replay the dead letters whose reason contains this (case-insensitive).
        all: replay every dead letter of the subscriptions.
        dry_run: only print what would be replayed.

    Returns:
        The replayed task ids.
    """
    if not (task_ids or reason or all):
        raise ValueError("choose what to replay: --task_ids, --reason or --all")
    url, subs = _target(job_root, queue, subscription, acting="rslp dlq replay")
    print(f"queue {url}")
    with open_queue(url) as q, _Peek(q, subs) as peek:
        letters = peek.letters
        chosen = _select(letters, task_ids, reason, everything=all)
        by_topic: dict[str, list[DeadLetter]] = {}
        for d in chosen:
            by_topic.setdefault(q.topic_of(d.source), []).append(d)
        replayed: list[str] = []
        for topic, group in by_topic.items():
            unique = list({d.id: d for d in group}.values())
            print(f"{'would replay' if dry_run else 'replaying'} {len(unique)} tasks to {topic}")
            replayed += [d.id for d in unique]
            if dry_run:
                continue
            q.publish(topic, [_replayed(d) for d in unique])
            for d in unique:
                if d.task is not None and _own_job(d.task, job_root):
                    JobRoot(d.task.job_root or "").clear(d.task, *STALE_MARKERS)
            for d in group:
                peek.ack(d)
        print(
            f"{len(chosen)} of {len(letters)} dead letters chosen" + (" (dry run: nothing changed)" if dry_run else "")
        )
        return replayed


def _body(d: DeadLetter) -> dict[str, Any] | str:
    """The task as sent; ``created`` is "unknown" where the sender (the ancestor's format) set none."""
    if d.task is None:
        return d.message.data.decode("utf-8", "replace")
    body = d.task.model_dump(mode="json", exclude_none=True)
    if "created" not in json.loads(d.message.data):  # else the decoder's default: the time of decoding
        body["created"] = "unknown"
    return body


def _replayed(d: DeadLetter) -> Outgoing:
    """The message to republish: the task with a fresh retry budget, or the raw message if it is not a task."""
    attributes = {k: v for k, v in d.message.attributes.items() if not k.startswith(("rslp_", "CloudPubSubDeadLetter"))}
    if d.task is None:  # e.g. a newer schema: replayed unchanged, for an upgraded worker
        return Outgoing(d.message.data, attributes)
    return Outgoing(d.task.model_copy(update={"attempt": 0, "not_before": None}).encode(), attributes)
