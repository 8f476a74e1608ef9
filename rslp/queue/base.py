"""The queue interface that the worker, write_jobs and the CLI program against.

Two backends implement it and nothing more: :mod:`rslp.queue.pubsub` (Google Cloud
Pub/Sub or its emulator) and :mod:`rslp.queue.local` (embedded SQLite). One
conformance suite (tests/integration/test_queue_conformance.py) runs against both, so
"works on the embedded queue" means "works on Pub/Sub".

Vocabulary follows Pub/Sub: messages are published to a *topic* and pulled from a
*subscription* of it, under a *lease* that the puller extends while it works and
ends with ack (done) or nack (give back). Each subscription ``S`` has a dead-letter
topic and subscription, both named ``S-dead-letter``; a message delivered more than
``max_deliveries`` times without an ack moves there (this catches workers that die
outright), and the worker moves poison messages there itself with a reason.
"""

from __future__ import annotations

import abc
import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from rslp.queue.limits import MAX_DATA_BYTES, MessageTooLargeError, fit_attributes
from rslp.task import Task

#: Deliveries without an ack before a subscription dead-letters a message on its own. Only
#: holders that die without notice spend deliveries (a worker that gets SIGTERM hands its
#: task back by republishing it), and on a preemptible fleet that is infrastructure, not
#: the task: the worker's own attempts count the failures it sees. So the limit is a
#: generous backstop for a message that kills its worker outright every time: at most this
#: many worker deaths, while a task survives that many holders killed under it less one.
MAX_DELIVERIES = 20

#: Attribute names a dead letter carries: why, from where (set by the worker or the backend), and what
#: failed it, after how many runs, on which worker, and where (set by the worker; ``rslp dlq`` reads them).
DEAD_LETTER_REASON = "rslp_dead_letter_reason"
DEAD_LETTER_SOURCE = "rslp_dead_letter_source"
DEAD_LETTER_KIND = "rslp_kind"
DEAD_LETTER_ATTEMPTS = "rslp_attempts"
DEAD_LETTER_WORKER = "rslp_worker"
DEAD_LETTER_TRACEBACK = "rslp_traceback"
#: Attribute the backends set when a message was moved for too many deliveries.
MAX_DELIVERIES_REASON = "delivered too many times without an ack (the worker running it died?)"
#: How long a peek holds what it has read, so that one message is not read twice; handed back at once after.
PEEK_LEASE = 30.0


def dead_letter_name(subscription: str) -> str:
    """The dead-letter topic and subscription of ``subscription``."""
    return f"{subscription}-dead-letter"


def dead_letter_reason(message: Received) -> str:
    """Why ``message`` was dead-lettered: the worker's reason, else the queue's (too many deliveries)."""
    return message.attributes.get(DEAD_LETTER_REASON) or MAX_DELIVERIES_REASON


def dead_letter_kind(message: Received) -> str:
    """The worker's failure kind; ``max_deliveries`` when the queue moved it (its worker died)."""
    if kind := message.attributes.get(DEAD_LETTER_KIND):
        return kind
    return "max_deliveries" if dead_letter_reason(message) == MAX_DELIVERIES_REASON else "?"


def setup_command(url: str, subscription: str) -> str:
    """The command that creates ``subscription`` (or the source a dead-letter subscription belongs to)."""
    return f"rslp setup --queue {url} --topics {subscription.removesuffix(dead_letter_name(''))}"


def missing_subscription_hint(url: str, subscription: str, existing: Iterable[str]) -> str:
    """What to do about a missing ``subscription``: the close one that exists, else the command that creates it.

    A typo (``demo-cpuu``) must not be answered only with a setup command that would make
    a wrong topic: the close name comes first, and the subscriptions that do exist are
    named either way (at most 20); the setup command is offered for a name meant to be new.
    """
    names = sorted(n for n in existing if not n.endswith(dead_letter_name("")))
    there = f"subscriptions there: {', '.join(names[:20]) or 'none'}{', ...' if len(names) > 20 else ''}"
    create = setup_command(url, subscription)
    if close := difflib.get_close_matches(subscription, names, n=1, cutoff=0.8):
        return f"did you mean {close[0]!r}? ({there}; if {subscription!r} is meant to be new: {create})"
    return f"{there}; create it with: {create}"


class LeaseLostError(RuntimeError):
    """A lease could not be extended: the message may already be with another worker."""


@dataclass
class Received:
    """A message pulled under a lease. ``delivery_attempt`` is 1 on first delivery."""

    subscription: str
    data: bytes
    lease_id: str
    message_id: str
    delivery_attempt: int
    attributes: dict[str, str] = field(default_factory=dict)
    publish_time: datetime | None = None


@dataclass
class Outgoing:
    """A message to publish, with optional string attributes."""

    data: bytes
    attributes: dict[str, str] = field(default_factory=dict)


def encode_task(task: Task) -> Outgoing:
    """The message for ``task``, or :class:`MessageTooLargeError` naming it if Pub/Sub would refuse it."""
    data = task.encode()
    if len(data) > MAX_DATA_BYTES:
        where = f"step {task.step} of partition {task.partition}" if task.job_id else task.name
        raise MessageTooLargeError(
            f"task {task.task_id} ({where}) is {len(data):,} bytes, over Pub/Sub's {MAX_DATA_BYTES:,}-byte"
            " message limit: pass large inputs as paths under the job root, not in args"
        )
    return Outgoing(data)


@dataclass(frozen=True)
class QueueCounts:
    """What a backend can tell about a subscription's backlog."""

    backlog: int
    in_flight: int | None
    oldest_unacked_seconds: float | None


class Queue(abc.ABC):
    """A message queue with leases, redelivery and dead letters."""

    #: Why :meth:`counts` last returned None (one line), where the backend knows.
    counts_note: str = ""

    @abc.abstractmethod
    def setup(
        self, topic: str, subscription: str, *, max_deliveries: int = MAX_DELIVERIES, ack_deadline: int = 60
    ) -> None:
        """Create ``topic``, ``subscription`` and its dead-letter topic and subscription.

        Idempotent: anything that exists already is kept as it is.
        """

    @abc.abstractmethod
    def attach_dead_letters(self, subscription: str, *, max_deliveries: int = MAX_DELIVERIES) -> list[str]:
        """Give an existing ``subscription`` the dead letters :meth:`setup` would have given it.

        That is its dead-letter topic, a subscription on that topic, and a dead-letter
        policy. Creates only what is missing (idempotent) and returns what it created;
        raises where it may not.
        """

    @abc.abstractmethod
    def subscriptions_of(self, topic: str) -> list[str]:
        """The subscriptions attached to ``topic`` ([] if the topic does not exist)."""

    @abc.abstractmethod
    def topic_of(self, subscription: str) -> str:
        """The topic ``subscription`` is attached to (where a task is republished)."""

    @abc.abstractmethod
    def publish(self, topic: str, messages: Sequence[Outgoing]) -> list[str]:
        """Publish ``messages`` and return their ids once the backend has confirmed all.

        Raises if any publish failed; the caller decides whether to retry. Pub/Sub drops
        messages published to an existing topic that no subscription reads; the embedded
        queue, where a topic exists only through its subscriptions, refuses them with a
        :class:`~rslp.errors.QueueResourceError`, as Pub/Sub refuses a missing topic.
        """

    @abc.abstractmethod
    def pull(self, subscription: str, lease_seconds: float, max_messages: int = 1, wait: float = 0.0) -> list[Received]:
        """Take up to ``max_messages`` under a lease of ``lease_seconds``; ``[]`` if none.

        ``wait``: where the backend blocks on an empty subscription (Pub/Sub), block at
        most this long (at least a short minimum); the embedded queue never blocks.
        """

    def pull_first(self, subscriptions: Sequence[str], lease_seconds: float, wait: float = 0.0) -> Received | None:
        """One message from the most preferred of ``subscriptions`` that has one, or None.

        This default pulls each in turn, which is right for a backend whose pull never
        blocks (the embedded queue). A backend whose pull blocks on an empty
        subscription overrides it, so that a worker never waits once per empty
        subscription (:mod:`rslp.queue.preferred`). Nothing pulled is ever left
        leased without being returned: a message pulled but not returned is handed
        back at once, without spending a delivery.
        """
        for subscription in subscriptions:
            messages = self.pull(subscription, lease_seconds, wait=wait)
            if messages:
                return messages[0]
        return None

    def peek(self, subscription: str, max_messages: int = 1000) -> list[Received]:
        """Up to ``max_messages`` of ``subscription``'s messages, left where they are (what status and dlq list read).

        Pub/Sub has no peek, so this default pulls them under a short lease (so that
        one is not pulled twice) and hands every one back before it returns; a
        backend that can read without taking overrides it.
        """
        pulled: list[Received] = []
        try:
            while len(pulled) < max_messages and (
                batch := self.pull(subscription, PEEK_LEASE, max_messages=min(100, max_messages - len(pulled)), wait=1)
            ):
                pulled += batch
        finally:
            for m in pulled:
                self.nack(m)
        return pulled

    @abc.abstractmethod
    def extend(self, message: Received, lease_seconds: float) -> None:
        """Extend ``message``'s lease to ``lease_seconds`` from now, or raise LeaseLostError."""

    @abc.abstractmethod
    def ack(self, message: Received) -> None:
        """The message is done: remove it for good."""

    @abc.abstractmethod
    def nack(self, message: Received, delay: float = 0.0) -> None:
        """Give the message back, to be redelivered after ``delay`` seconds."""

    @abc.abstractmethod
    def counts(self, subscription: str) -> QueueCounts | None:
        """Backlog of ``subscription``, or None where the backend cannot tell."""

    def dead_letter(self, message: Received, reason: str, attributes: dict[str, str] | None = None) -> None:
        """Move ``message`` to its dead-letter topic with ``reason``, then ack it.

        Attributes are cut to Pub/Sub's limits (:mod:`rslp.queue.limits`), so a long or
        non-ASCII reason cannot make the dead letter itself fail. The publish is
        confirmed before the ack, so a crash in between leaves a duplicate dead letter
        at worst, never a lost one.
        """
        own = {**(attributes or {}), DEAD_LETTER_REASON: reason, DEAD_LETTER_SOURCE: message.subscription}
        attrs = fit_attributes(message.attributes, own)
        self.publish(dead_letter_name(message.subscription), [Outgoing(message.data, attrs)])
        self.ack(message)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients and flush pending work; the queue is unusable afterwards."""

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
