"""Take the most preferred available message from several subscriptions whose pull blocks.

A worker serving several subscriptions (a CPU pool that also takes combine) wants the
first subscription in its list that has a message. Pulling each in turn costs a whole
pull wait per empty subscription on Pub/Sub (seconds per task, measured in
bench/preferred.py). Instead:

1. **Poll** each subscription in preference order with a pull that returns at once
   (``return_immediately``). The first message found is the answer, and nothing else
   was pulled, so nothing needs handing back: with a backlog this is the only phase.
2. Only when every subscription was empty at that moment, **one combined wait**: a
   blocking pull on every subscription at once, in threads. The first message to
   arrive is taken (the most preferred, where several arrive together). A message
   pulled by another of these pulls, then or later, is a *stray*: it is handed back at
   once by republishing it unchanged and acking the original, the same move as a
   preempted task (rslp/worker/loop.py). A nack would count one more delivery toward
   the subscription's dead-letter limit, and a task could in principle be a stray
   again and again; a republished copy starts from delivery one, so straying can never
   dead-letter a task. If the republish fails, the stray is nacked instead (Pub/Sub
   redelivers it; one delivery is spent).

This module never runs or decodes a message: it only pulls and hands back.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections.abc import Sequence
from typing import Protocol

from rslp import log
from rslp.errors import typed
from rslp.queue.base import Outgoing, Received

logger = log.get(__name__)


class BlockingQueue(Protocol):
    """What the preferred pull needs of a backend whose pull blocks on an empty subscription."""

    def poll(self, subscription: str, lease_seconds: float) -> list[Received]: ...

    def pull(
        self, subscription: str, lease_seconds: float, max_messages: int = 1, wait: float = 0.0
    ) -> list[Received]: ...

    def topic_of(self, subscription: str) -> str: ...

    def publish(self, topic: str, messages: Sequence[Outgoing]) -> list[str]: ...

    def ack(self, message: Received) -> None: ...

    def nack(self, message: Received, delay: float = 0.0) -> None: ...


class PreferredPull:
    """Polls, then waits on all subscriptions at once; owns the threads of the combined wait."""

    def __init__(self, queue: BlockingQueue) -> None:
        self.queue = queue
        self.handed_back = 0
        self._lock = threading.Lock()
        self._pool: cf.ThreadPoolExecutor | None = None

    def pull_first(self, subscriptions: Sequence[str], lease_seconds: float, wait: float) -> Received | None:
        """The first message of the most preferred subscription that has one, or None after ``wait``."""
        if len(subscriptions) == 1:  # nothing to prefer: the plain blocking pull is the fastest
            got = self.queue.pull(subscriptions[0], lease_seconds, wait=wait)
            return got[0] if got else None
        for subscription in subscriptions:
            got = self.queue.poll(subscription, lease_seconds)
            if got:
                return got[0]
        return self._wait_on_all(subscriptions, lease_seconds, wait)

    def _wait_on_all(self, subscriptions: Sequence[str], lease_seconds: float, wait: float) -> Received | None:
        if self._pool is None:
            self._pool = cf.ThreadPoolExecutor(max_workers=4 * len(subscriptions), thread_name_prefix="rslp-pull")
        rank = {}
        for i, subscription in enumerate(subscriptions):
            rank[self._pool.submit(self.queue.pull, subscription, lease_seconds, 1, wait)] = i
        pending = set(rank)
        chosen: Received | None = None
        try:
            while pending and chosen is None:
                done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                arrived: list[Received] = []
                error: Exception | None = None
                for f in sorted(done, key=rank.__getitem__):  # most preferred first
                    try:
                        arrived += f.result()
                    except Exception as e:  # noqa: BLE001 - keep what the other pulls brought
                        error = error or e
                if arrived:
                    chosen = arrived[0]
                    for stray in arrived[1:]:
                        self._hand_back(stray)
                elif error is not None:
                    raise error
        finally:
            for f in pending:  # still waiting: whatever they bring later is a stray
                f.add_done_callback(self._hand_back_result)
        return chosen

    def _hand_back_result(self, future: cf.Future[list[Received]]) -> None:
        if future.cancelled() or future.exception() is not None:
            return  # nothing was leased
        for message in future.result():
            self._hand_back(message)

    def _hand_back(self, message: Received) -> None:
        """Republish ``message`` unchanged and ack it, so no delivery is spent; nack if that fails."""
        try:
            topic = self.queue.topic_of(message.subscription)
            self.queue.publish(topic, [Outgoing(message.data, dict(message.attributes))])
            self.queue.ack(message)
        except Exception as e:  # noqa: BLE001 - fall back to a nack; Pub/Sub redelivers it
            logger.warning("stray_nacked", subscription=message.subscription, error=typed(e))
            try:
                self.queue.nack(message)
            except Exception as e2:  # noqa: BLE001 - the lease then simply runs out
                logger.warning("stray_nack_failed", subscription=message.subscription, error=str(e2))
            return
        with self._lock:
            self.handed_back += 1
        logger.info("stray_handed_back", subscription=message.subscription, message_id=message.message_id)

    def close(self) -> None:
        """Wait for the combined wait's last pulls, so their strays are handed back before the clients close."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
