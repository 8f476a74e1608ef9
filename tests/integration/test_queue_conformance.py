"""One conformance suite for both queue backends: what the worker relies on.

Every test runs on the embedded SQLite queue and on the real google-cloud-pubsub
client against the official emulator (see the ``backend`` fixture).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from rslp.queue import Outgoing, Queue, dead_letter_name
from rslp.queue.base import DEAD_LETTER_REASON, MAX_DELIVERIES_REASON
from tests.conftest import ARRIVAL_CEILING, Backend, pull_until, pull_until_canary


def test_publish_pull_ack(queue: Queue, topic: str, backend: Backend) -> None:
    queue.setup(topic, topic)
    ids = queue.publish(topic, [Outgoing(f"m{i}".encode(), {"k": str(i)}) for i in range(3)])
    assert len(ids) == 3
    got = {}
    for _ in range(3):
        m = pull_until(queue, topic, backend.min_lease, 10)
        assert m is not None
        assert m.delivery_attempt == 1
        got[m.data] = m.attributes["k"]
        queue.ack(m)
    assert got == {b"m0": "0", b"m1": "1", b"m2": "2"}
    assert pull_until_canary(queue, topic, backend.min_lease) == []


def test_setup_is_idempotent(queue: Queue, topic: str) -> None:
    queue.setup(topic, topic)
    queue.setup(topic, topic)
    assert queue.topic_of(topic) == topic


def test_attach_dead_letters_leaves_a_set_up_subscription_as_it_is(queue: Queue, topic: str) -> None:
    queue.setup(topic, topic)
    assert queue.attach_dead_letters(topic) == []
    assert queue.subscriptions_of(topic) == [topic]
    assert queue.subscriptions_of(f"{topic}-never-made") == []


def test_extended_lease_prevents_redelivery(queue: Queue, topic: str, backend: Backend) -> None:
    """Two messages under the same short lease; only one is extended. The other's redelivery
    proves the short lease has run out, so the extended one's absence is not luck or haste."""
    queue.setup(topic, topic)
    queue.publish(topic, [Outgoing(b"extended"), Outgoing(b"control")])
    lease = backend.min_lease
    held = {}
    deadline = time.monotonic() + ARRIVAL_CEILING
    while len(held) < 2 and time.monotonic() < deadline:
        for m in queue.pull(topic, lease, max_messages=2):
            if m.data == b"extended":
                queue.extend(m, 600)  # far past this test's end, at once
            held[m.data] = m
    assert set(held) == {b"extended", b"control"}
    redelivered: list[bytes] = []
    deadline = time.monotonic() + lease * 3 + ARRIVAL_CEILING
    while b"control" not in redelivered and time.monotonic() < deadline:
        redelivered += [m.data for m in queue.pull(topic, lease, max_messages=2)]
        time.sleep(0.05)
    assert redelivered == [b"control"], "the extended message came back, or the control never did"
    queue.extend(held[b"extended"], lease)  # still ours: extending again works
    queue.ack(held[b"extended"])


def test_expired_lease_is_redelivered_with_higher_attempt(queue: Queue, topic: str, backend: Backend) -> None:
    queue.setup(topic, topic)
    queue.publish(topic, [Outgoing(b"x")])
    first = pull_until(queue, topic, backend.min_lease, 10)
    assert first is not None and first.delivery_attempt == 1
    again = pull_until(queue, topic, backend.min_lease, backend.min_lease * 3 + 5)
    assert again is not None and again.data == b"x"
    assert again.delivery_attempt == 2
    queue.ack(again)


def test_nack_redelivers(queue: Queue, topic: str, backend: Backend) -> None:
    queue.setup(topic, topic)
    queue.publish(topic, [Outgoing(b"n")])
    m = pull_until(queue, topic, backend.min_lease, 10)
    assert m is not None
    queue.nack(m)
    again = pull_until(queue, topic, backend.min_lease, 15)
    assert again is not None and again.data == b"n" and again.delivery_attempt == 2
    queue.ack(again)


def test_too_many_deliveries_go_to_dead_letter_topic(queue: Queue, topic: str, backend: Backend) -> None:
    queue.setup(topic, topic, max_deliveries=5)
    queue.publish(topic, [Outgoing(b"poison")])
    attempts = []
    for _ in range(5):
        m = pull_until(queue, topic, backend.min_lease, 20)
        assert m is not None
        attempts.append(m.delivery_attempt)
        queue.nack(m)
    assert attempts == [1, 2, 3, 4, 5]
    # The next delivery would be the sixth: the message goes to the dead letters instead
    # (the emulator moves it when its retry backoff is over and the source is pulled).
    dead = None
    deadline = time.monotonic() + 60
    while dead is None and time.monotonic() < deadline:
        assert queue.pull(topic, backend.min_lease) == []
        dead = pull_until(queue, dead_letter_name(topic), backend.min_lease, 1)
    assert dead is not None and dead.data == b"poison"
    if backend.name == "local":  # Pub/Sub sets its own CloudPubSubDeadLetterSource* attributes
        assert dead.attributes[DEAD_LETTER_REASON] == MAX_DELIVERIES_REASON


def test_dead_letter_keeps_reason_and_acks(queue: Queue, topic: str, backend: Backend) -> None:
    queue.setup(topic, topic)
    queue.publish(topic, [Outgoing(b"bad", {"orig": "1"})])
    m = pull_until(queue, topic, backend.min_lease, 10)
    assert m is not None
    queue.dead_letter(m, "not JSON", {"rslp_kind": "malformed"})
    dead = pull_until(queue, dead_letter_name(topic), backend.min_lease, 10)
    assert dead is not None
    assert dead.data == b"bad"
    assert dead.attributes[DEAD_LETTER_REASON] == "not JSON"
    assert dead.attributes["rslp_kind"] == "malformed"
    assert dead.attributes["orig"] == "1"
    assert pull_until_canary(queue, topic, backend.min_lease) == []


_CONSUMER = """
import sys, time
from tests.conftest import Backend
backend = Backend(sys.argv[1], sys.argv[2], float(sys.argv[3]))
q = backend.open()
while True:
    got = q.pull(sys.argv[4], backend.min_lease)
    if got:
        print("pulled", got[0].data.decode(), flush=True)
        time.sleep(3600)
"""


def test_sigkill_consumer_loses_nothing(queue: Queue, topic: str, backend: Backend) -> None:
    queue.setup(topic, topic)
    queue.publish(topic, [Outgoing(b"survivor")])
    proc = subprocess.Popen(
        [sys.executable, "-c", _CONSUMER, backend.name, backend.url, str(backend.min_lease), topic],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "pulled survivor"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    m = pull_until(queue, topic, backend.min_lease, backend.min_lease * 3 + 10)
    assert m is not None and m.data == b"survivor"
    assert m.delivery_attempt == 2
    queue.ack(m)


def test_counts_report_backlog_where_the_backend_can(queue: Queue, topic: str, backend: Backend) -> None:
    queue.setup(topic, topic)
    queue.publish(topic, [Outgoing(b"a"), Outgoing(b"b")])
    counts = queue.counts(topic)
    if backend.name == "pubsub":
        assert counts is None  # only Cloud Monitoring knows; documented in pubsub.py
        return
    assert counts is not None
    assert counts.backlog == 2 and counts.in_flight == 0
    m = pull_until(queue, topic, backend.min_lease, 5)
    assert m is not None
    counts = queue.counts(topic)
    assert counts is not None and counts.backlog == 1 and counts.in_flight == 1


def test_peek_reads_messages_and_leaves_them_for_a_worker(queue: Queue, topic: str, backend: Backend) -> None:
    queue.setup(topic, topic)
    queue.publish(topic, [Outgoing(f"m{i}".encode(), {"k": str(i)}) for i in range(3)])
    seen: list[bytes] = []
    deadline = time.monotonic() + ARRIVAL_CEILING
    while len(seen) < 3 and time.monotonic() < deadline:  # Pub/Sub may hand out fewer than are there
        seen = sorted(m.data for m in queue.peek(topic))
    assert seen == [b"m0", b"m1", b"m2"]
    m = pull_until(queue, topic, backend.min_lease, ARRIVAL_CEILING)  # handed back at once, not leased
    assert m is not None and m.data in seen
