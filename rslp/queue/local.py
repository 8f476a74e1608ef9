"""The embedded queue: Pub/Sub's semantics in one SQLite file, for a single machine.

No library among the well-kept ones gives leases with expiry, per-delivery attempt
counts and dead-letter topics over a file that several processes share, so this is a
small SQLite layer written by hand. Its file must be on local disk: SQLite's WAL is
unsafe on network file systems (:mod:`rslp.queue.placement`). It persists across restarts, and several worker
processes may use the same file at once: every state change is one short
``BEGIN IMMEDIATE`` transaction, and WAL mode lets readers proceed meanwhile.

A lease is a random token plus a visibility time. A message is deliverable when its
visibility time has passed, so an unacked message whose worker died simply becomes
visible again (redelivery); each delivery increments its count, and a message that
has been delivered ``max_deliveries`` times is moved to the subscription's dead-letter
topic instead of being delivered again, as Pub/Sub's dead-letter policy does.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from upath import UPath

from rslp.errors import QueueResourceError
from rslp.queue.base import (
    DEAD_LETTER_REASON,
    DEAD_LETTER_SOURCE,
    MAX_DELIVERIES,
    MAX_DELIVERIES_REASON,
    LeaseLostError,
    Outgoing,
    Queue,
    QueueCounts,
    Received,
    dead_letter_name,
    missing_subscription_hint,
    setup_command,
)
from rslp.queue.placement import warn_if_network
from rslp.storage import is_local

_SCHEMA = """
CREATE TABLE IF NOT EXISTS subscriptions (
    name TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    max_deliveries INTEGER NOT NULL,
    ack_deadline REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription TEXT NOT NULL,
    data BLOB NOT NULL,
    attributes TEXT NOT NULL,
    published REAL NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 0,
    visible_at REAL NOT NULL,
    lease TEXT
);
CREATE INDEX IF NOT EXISTS messages_ready ON messages (subscription, visible_at, id);
-- The dead-letter sweep of every pull looks only at messages that used up their
-- deliveries (a handful), found through this index, never at the whole ready backlog:
-- a pull costs the same with 100k messages waiting as with 1k (bench/local_queue.py).
CREATE INDEX IF NOT EXISTS messages_spent ON messages (subscription, deliveries, visible_at);
"""


_DLQ_SUFFIX = dead_letter_name("")
T = TypeVar("T")


class LocalQueue(Queue):
    """An embedded, persistent queue in the SQLite file at ``path``."""

    def __init__(self, path: str | os.PathLike[str], create: bool = True, readonly: bool = False) -> None:
        self.path = UPath(path)
        self.readonly = readonly
        if not is_local(self.path):
            raise ValueError(f"the embedded queue needs a local file, not {path}")
        if (readonly or not create) and not self.path.exists():
            raise QueueResourceError(
                f"no such queue: {self.path} (check the path; only write-jobs and setup create queues)"
            )
        self._local = threading.local()
        if readonly:  # status and dlq list: the file is read as it is, whatever it holds
            self._read(lambda db: db.execute("SELECT 1 FROM subscriptions LIMIT 1").fetchall())
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Messages are tasks: only their owner may read or inject them. SQLite gives its
        # -wal and -shm files the database file's mode, so creating it 0600 covers all three.
        os.close(os.open(self.path.path, os.O_CREAT | os.O_RDWR, 0o600))
        warn_if_network(Path(self.path.path))
        self._db().executescript(_SCHEMA)  # executescript manages its own transaction

    def _db(self) -> sqlite3.Connection:
        # One connection per thread and per process: sqlite3 connections must not
        # cross threads, and must never be inherited across fork.
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None or getattr(self._local, "pid", None) != os.getpid():
            if self.readonly:  # never creates a table nor changes the journal mode (SQLite's mode=ro)
                uri = f"file:{urllib.parse.quote(self.path.path)}?mode=ro"
                db = sqlite3.connect(uri, uri=True, timeout=60, isolation_level=None)
            else:
                db = sqlite3.connect(self.path.path, timeout=60, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
            self._local.db, self._local.pid = db, os.getpid()
        return db

    def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """``query`` on this thread's connection, outside any write transaction; a file that is no queue says so."""
        try:
            return query(self._db())
        except sqlite3.DatabaseError as e:
            if self.readonly:
                raise QueueResourceError(f"{self.path} is not an rslp queue ({e})") from None
            raise

    def _tx(self) -> _Transaction:
        return _Transaction(self._db())

    def setup(
        self, topic: str, subscription: str, *, max_deliveries: int = MAX_DELIVERIES, ack_deadline: int = 60
    ) -> None:
        dlq = dead_letter_name(subscription)
        with self._tx() as db:
            for name, top, deliveries in ((subscription, topic, max_deliveries), (dlq, dlq, 1_000_000)):
                db.execute(
                    "INSERT OR IGNORE INTO subscriptions VALUES (?, ?, ?, ?)",
                    (name, top, deliveries, ack_deadline),
                )

    def attach_dead_letters(self, subscription: str, *, max_deliveries: int = MAX_DELIVERIES) -> list[str]:
        """Every embedded subscription moves messages after ``max_deliveries``; only the keeper may be missing."""
        dlq = dead_letter_name(subscription)
        with self._tx() as db:
            row = db.execute("SELECT ack_deadline FROM subscriptions WHERE name = ?", (subscription,)).fetchone()
            if row is None:
                raise self._no_subscription(subscription)
            created = db.execute(
                "INSERT OR IGNORE INTO subscriptions VALUES (?, ?, ?, ?)", (dlq, dlq, 1_000_000, row[0])
            ).rowcount
        return [f"subscription {dlq}"] if created else []

    def subscriptions_of(self, topic: str) -> list[str]:
        return self._read(
            lambda db: [r[0] for r in db.execute("SELECT name FROM subscriptions WHERE topic = ?", (topic,))]
        )

    def topic_of(self, subscription: str) -> str:
        return self._read(lambda db: self._topic(db, subscription))

    def _topic(self, db: sqlite3.Connection, subscription: str) -> str:
        """The topic of ``subscription``, or a QueueResourceError with the command that creates it."""
        row = db.execute("SELECT topic FROM subscriptions WHERE name = ?", (subscription,)).fetchone()
        if row is None:
            raise self._no_subscription(subscription)
        return str(row[0])

    def _no_subscription(self, subscription: str) -> QueueResourceError:
        existing = [r[0] for r in self._db().execute("SELECT name FROM subscriptions")]
        return QueueResourceError(
            f"no subscription {subscription!r} in {self.path}; "
            + missing_subscription_hint(f"local://{self.path}", subscription, existing)
        )

    def publish(self, topic: str, messages: Sequence[Outgoing]) -> list[str]:
        now = time.time()
        ids: list[str] = []
        with self._tx() as db:
            subs = [r[0] for r in db.execute("SELECT name FROM subscriptions WHERE topic = ?", (topic,))]
            if not subs:  # Pub/Sub refuses a topic that does not exist; here it would swallow the messages
                raise QueueResourceError(
                    f"no topic {topic!r} in {self.path} (no subscription reads it); "
                    f"create it with: {setup_command(f'local://{self.path}', topic)}"
                )
            for m in messages:
                first_id = None
                for sub in subs:
                    cur = db.execute(
                        "INSERT INTO messages (subscription, data, attributes, published, visible_at)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (sub, m.data, json.dumps(m.attributes), now, now),
                    )
                    first_id = first_id or str(cur.lastrowid)
                ids.append(first_id or uuid.uuid4().hex)
        return ids

    def pull(self, subscription: str, lease_seconds: float, max_messages: int = 1, wait: float = 0.0) -> list[Received]:
        out: list[Received] = []
        now = time.time()
        with self._tx() as db:
            self._topic(db, subscription)  # raises for an unknown subscription
            self._sweep(db, subscription, now)
            if subscription.endswith(_DLQ_SUFFIX):  # what its source exhausted is due here now
                self._sweep(db, subscription.removesuffix(_DLQ_SUFFIX), now)
            rows = db.execute(
                "SELECT id, data, attributes, published, deliveries FROM messages"
                " WHERE subscription = ? AND visible_at <= ? ORDER BY visible_at, id LIMIT ?",
                (subscription, now, max_messages),
            ).fetchall()
            for msg_id, data, attributes, published, deliveries in rows:
                lease = uuid.uuid4().hex
                db.execute(
                    "UPDATE messages SET deliveries = deliveries + 1, visible_at = ?, lease = ? WHERE id = ?",
                    (now + lease_seconds, lease, msg_id),
                )
                out.append(
                    Received(
                        subscription=subscription,
                        data=data,
                        lease_id=lease,
                        message_id=str(msg_id),
                        delivery_attempt=deliveries + 1,
                        attributes=json.loads(attributes),
                        publish_time=datetime.fromtimestamp(published, UTC),
                    )
                )
        return out

    def _sweep(self, db: sqlite3.Connection, subscription: str, now: float) -> None:
        """Move ``subscription``'s deliverable messages that used up their deliveries to its dead letters."""
        row = db.execute("SELECT max_deliveries FROM subscriptions WHERE name = ?", (subscription,)).fetchone()
        if row is None:
            return
        due = "subscription = ? AND visible_at <= ? AND deliveries >= ?"
        params = (subscription, now, row[0])
        db.execute(
            "INSERT INTO messages (subscription, data, attributes, published, visible_at)"
            f" SELECT ?, data, json_set(attributes, '$.{DEAD_LETTER_REASON}', ?, '$.{DEAD_LETTER_SOURCE}', ?),"
            f" ?, ? FROM messages WHERE {due}",
            (dead_letter_name(subscription), MAX_DELIVERIES_REASON, subscription, now, now, *params),
        )
        db.execute(f"DELETE FROM messages WHERE {due}", params)

    def extend(self, message: Received, lease_seconds: float) -> None:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE messages SET visible_at = ? WHERE id = ? AND lease = ?",
                (time.time() + lease_seconds, int(message.message_id), message.lease_id),
            )
            if cur.rowcount == 0:
                raise LeaseLostError(f"lease on message {message.message_id} was lost")

    def ack(self, message: Received) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM messages WHERE id = ? AND lease = ?", (int(message.message_id), message.lease_id))

    def nack(self, message: Received, delay: float = 0.0) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE messages SET visible_at = ?, lease = NULL WHERE id = ? AND lease = ?",
                (time.time() + delay, int(message.message_id), message.lease_id),
            )

    def counts(self, subscription: str) -> QueueCounts:
        now = time.time()
        total, leased, oldest = self._read(
            lambda db: db.execute(
                "SELECT COUNT(*), SUM(lease IS NOT NULL AND visible_at > ?), MIN(published)"
                " FROM messages WHERE subscription = ?",
                (now, subscription),
            ).fetchone()
        )
        leased = leased or 0
        return QueueCounts(
            backlog=total - leased,
            in_flight=leased,
            oldest_unacked_seconds=None if oldest is None else now - oldest,
        )

    def peek(self, subscription: str, max_messages: int = 1000) -> list[Received]:
        """Up to ``max_messages`` of ``subscription``'s messages, oldest first, read without changing the file.

        A dead-letter subscription's also include what its source used up its deliveries
        on and the next pull will move there (:meth:`_sweep`), as a pull would show them.
        """
        now = time.time()
        query = "SELECT id, data, attributes, published, deliveries FROM messages WHERE subscription = ?"
        rows = self._read(
            lambda db: db.execute(f"{query} ORDER BY id LIMIT ?", (subscription, max_messages)).fetchall()
        )
        source = subscription.removesuffix(_DLQ_SUFFIX)
        spent = []
        if source != subscription and len(rows) < max_messages:
            spent = self._read(
                lambda db: db.execute(
                    f"{query} AND visible_at <= ? AND deliveries >= "
                    "(SELECT max_deliveries FROM subscriptions WHERE name = ?) ORDER BY id LIMIT ?",
                    (source, now, source, max_messages - len(rows)),
                ).fetchall()
            )
        moved = {DEAD_LETTER_REASON: MAX_DELIVERIES_REASON, DEAD_LETTER_SOURCE: source}
        return [
            Received(
                subscription=subscription,
                data=data,
                lease_id="",
                message_id=str(msg_id),
                delivery_attempt=deliveries,
                attributes={**json.loads(attributes), **extra},
                publish_time=datetime.fromtimestamp(published, UTC),
            )
            for batch, extra in ((rows, {}), (spent, moved))
            for msg_id, data, attributes, published, deliveries in batch
        ]

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None and getattr(self._local, "pid", None) == os.getpid():
            db.close()
        self._local = threading.local()


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on error) on one connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
