"""A worker serving several subscriptions takes the most preferred available message,
without a pull wait per empty subscription and without spending a task's deliveries."""

from __future__ import annotations

import threading
import time

from rslp.queue import Outgoing, Queue
from rslp.queue.pubsub import PubSubQueue
from tests.conftest import PROJECT, Backend, pull_until


def _subscriptions(q: Queue, topic: str, n: int) -> list[str]:
    names = [f"{topic}-{i}" for i in range(n)]
    for name in names:
        q.setup(name, name)
    return names


def test_pull_first_takes_the_most_preferred_available_message(queue: Queue, topic: str, backend: Backend) -> None:
    subs = _subscriptions(queue, topic, 3)
    queue.publish(subs[2], [Outgoing(b"third")])
    queue.publish(subs[1], [Outgoing(b"second")])
    first = None
    deadline = time.monotonic() + 20
    while first is None and time.monotonic() < deadline:
        first = queue.pull_first(subs, backend.min_lease, wait=2)
    assert first is not None and first.data == b"second"
    queue.ack(first)
    then = queue.pull_first(subs, backend.min_lease, wait=2)
    assert then is not None and then.data == b"third"
    # The less preferred message was never pulled while the preferred one was taken.
    assert then.delivery_attempt == 1
    queue.ack(then)


def _emulator_queue(emulator_host: str) -> PubSubQueue:
    return PubSubQueue(PROJECT, pull_timeout=20)


def test_a_message_on_the_last_subscription_ends_one_combined_wait(emulator_host: str, topic: str) -> None:
    """Two empty preferred subscriptions cost no pull wait each: one wait covers all three."""
    q = _emulator_queue(emulator_host)
    subs = _subscriptions(q, topic, 3)
    threading.Timer(1.0, q.publish, (subs[2], [Outgoing(b"late")])).start()
    started = time.monotonic()
    got = q.pull_first(subs, 10, wait=20)
    waited = time.monotonic() - started
    assert got is not None and got.data == b"late"
    # Pulling in turn would wait out the first two subscriptions' pulls (each ~20 s) first.
    assert waited < 12, f"took {waited:.1f} s"
    q.ack(got)
    q.close()


def test_a_stray_message_is_handed_back_at_once_without_spending_a_delivery(emulator_host: str, topic: str) -> None:
    """Messages arriving on two subscriptions during one combined wait: one is taken, the
    other is republished at once and arrives again as a first delivery, so straying can
    never push a task toward the dead-letter limit."""
    q = _emulator_queue(emulator_host)
    subs = _subscriptions(q, topic, 2)
    for sub in subs:
        q.setup(sub, sub, max_deliveries=5)

    def publish_both() -> None:
        q.publish(subs[1], [Outgoing(b"b", {"k": "kept"})])
        q.publish(subs[0], [Outgoing(b"a", {"k": "kept"})])

    threading.Timer(1.0, publish_both).start()
    taken = q.pull_first(subs, 10, wait=20)
    assert taken is not None
    other = subs[1] if taken.subscription == subs[0] else subs[0]
    assert q._preferred is not None
    deadline = time.monotonic() + 30
    while q._preferred.handed_back == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert q._preferred.handed_back == 1
    again = pull_until(q, other, 10, 10)
    assert again is not None
    assert again.data == (b"a" if other == subs[0] else b"b") and again.attributes["k"] == "kept"
    assert again.delivery_attempt == 1
    q.ack(again)
    q.ack(taken)
    q.close()
