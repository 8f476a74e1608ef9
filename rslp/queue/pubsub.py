"""Google Cloud Pub/Sub backend (the real service, or the emulator via PUBSUB_EMULATOR_HOST).

Pulls are synchronous, one message at a time, with the lease set at once by
``modify_ack_deadline`` and then extended by the worker's heartbeat. Streaming pull is
deliberately not used: measured against the emulator it ignores flow control, keeps
feeding a dead connection, and silently drops leases after ``max_lease_duration``
(ARCHITECTURE.md, field notes).

Publishing sends each chunk of up to 1,000 messages (and under Pub/Sub's 10 MB request
limit) as one ``Publish`` request through the client's generated API, and the
response's message ids are the confirmation. Measured against the emulator
(bench/RESULTS.md), this is faster than the high-level client's per-message
``publish()`` futures, whose Python overhead dominates at 100k messages, and a worker's
single downstream message does not wait for a batch to fill. Nothing is buffered, so
nothing can be lost at exit.

Clients are created lazily in the process that uses them: gRPC does not survive fork.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from rslp.queue.base import LeaseLostError, Outgoing, Queue, QueueCounts, Received, dead_letter_name

if TYPE_CHECKING:
    import google.cloud.pubsub_v1 as pubsub_v1

#: Pub/Sub's ceiling for one ack-deadline change.
MAX_ACK_DEADLINE = 600


class PubSubQueue(Queue):
    """Pub/Sub in project ``project_id``; topic and subscription names are short ids."""

    def __init__(self, project_id: str, pull_timeout: float = 5.0, publish_timeout: float = 120.0) -> None:
        self.project_id = project_id
        self.pull_timeout = pull_timeout
        self.publish_timeout = publish_timeout
        self._publisher: pubsub_v1.PublisherClient | None = None
        self._subscriber: pubsub_v1.SubscriberClient | None = None
        self._topics: dict[str, str] = {}

    @property
    def publisher(self) -> pubsub_v1.PublisherClient:
        if self._publisher is None:
            import google.cloud.pubsub_v1 as pubsub_v1

            self._publisher = pubsub_v1.PublisherClient()
        return self._publisher

    @property
    def subscriber(self) -> pubsub_v1.SubscriberClient:
        if self._subscriber is None:
            import google.cloud.pubsub_v1 as pubsub_v1

            self._subscriber = pubsub_v1.SubscriberClient()
        return self._subscriber

    def topic_path(self, topic: str) -> str:
        return f"projects/{self.project_id}/topics/{topic}"

    def subscription_path(self, subscription: str) -> str:
        return f"projects/{self.project_id}/subscriptions/{subscription}"

    def setup(self, topic: str, subscription: str, *, max_deliveries: int = 5, ack_deadline: int = 60) -> None:
        from google.api_core.exceptions import AlreadyExists
        from google.protobuf.duration_pb2 import Duration

        dlq = dead_letter_name(subscription)
        for name in (topic, dlq):
            with contextlib.suppress(AlreadyExists):
                self.publisher.create_topic(request={"name": self.topic_path(name)})
        subscriptions: list[dict[str, Any]] = [
            {
                "name": self.subscription_path(subscription),
                "topic": self.topic_path(topic),
                "ack_deadline_seconds": ack_deadline,
                "dead_letter_policy": {
                    "dead_letter_topic": self.topic_path(dlq),
                    "max_delivery_attempts": max_deliveries,
                },
                # Without a retry policy a nack is redelivered at once, in a tight loop; a
                # short ceiling keeps a crashed worker's task from waiting long for its retry.
                "retry_policy": {"minimum_backoff": Duration(seconds=1), "maximum_backoff": Duration(seconds=10)},
            },
            # Pub/Sub drops messages published to a topic with no subscription: the
            # dead-letter topic needs one so that dead letters are kept for `rslp dlq`.
            {
                "name": self.subscription_path(dlq),
                "topic": self.topic_path(dlq),
                "ack_deadline_seconds": 60,
                "message_retention_duration": Duration(seconds=7 * 24 * 3600),
            },
        ]
        for request in subscriptions:
            with contextlib.suppress(AlreadyExists):
                self.subscriber.create_subscription(request=request)

    def topic_of(self, subscription: str) -> str:
        if subscription not in self._topics:
            sub = self.subscriber.get_subscription(request={"subscription": self.subscription_path(subscription)})
            self._topics[subscription] = sub.topic.rsplit("/", 1)[-1]
        return self._topics[subscription]

    def publish(self, topic: str, messages: Sequence[Outgoing]) -> list[str]:
        from google.pubsub_v1.services.publisher.client import PublisherClient as GapicPublisherClient

        path = self.topic_path(topic)
        ids: list[str] = []
        for chunk in _requests(messages):
            # The generated client's Publish (the high-level client subclasses it and
            # overrides publish() with its per-message batching).
            response = GapicPublisherClient.publish(
                self.publisher, request={"topic": path, "messages": chunk}, timeout=self.publish_timeout
            )
            ids += response.message_ids
        return ids

    def pull(self, subscription: str, lease_seconds: float, max_messages: int = 1, wait: float = 0.0) -> list[Received]:
        from google.api_core.exceptions import DeadlineExceeded, ServiceUnavailable

        path = self.subscription_path(subscription)
        try:
            response = self.subscriber.pull(
                request={"subscription": path, "max_messages": max_messages},
                timeout=max(1.0, wait or self.pull_timeout),
                retry=None,
            )
        except (DeadlineExceeded, ServiceUnavailable):
            return []
        if not response.received_messages:
            return []
        ack_ids = [r.ack_id for r in response.received_messages]
        self.subscriber.modify_ack_deadline(
            request={"subscription": path, "ack_ids": ack_ids, "ack_deadline_seconds": _deadline(lease_seconds)}
        )
        return [
            Received(
                subscription=subscription,
                data=r.message.data,
                lease_id=r.ack_id,
                message_id=r.message.message_id,
                delivery_attempt=r.delivery_attempt,
                attributes=dict(r.message.attributes),
                publish_time=r.message.publish_time,
            )
            for r in response.received_messages
        ]

    def _modify(self, message: Received, seconds: float) -> None:
        self.subscriber.modify_ack_deadline(
            request={
                "subscription": self.subscription_path(message.subscription),
                "ack_ids": [message.lease_id],
                "ack_deadline_seconds": _deadline(seconds),
            }
        )

    def extend(self, message: Received, lease_seconds: float) -> None:
        from google.api_core.exceptions import GoogleAPICallError

        try:
            self._modify(message, lease_seconds)
        except GoogleAPICallError as e:
            raise LeaseLostError(f"could not extend lease on {message.message_id}: {e}") from e

    def ack(self, message: Received) -> None:
        self.subscriber.acknowledge(
            request={"subscription": self.subscription_path(message.subscription), "ack_ids": [message.lease_id]}
        )

    def nack(self, message: Received, delay: float = 0.0) -> None:
        self._modify(message, delay)

    def counts(self, subscription: str) -> QueueCounts | None:
        """Backlog from Cloud Monitoring where credentials allow; else None, and :attr:`counts_note` says why."""
        from rslp.queue.monitoring import BacklogUnavailable, pubsub_backlog

        try:
            return pubsub_backlog(self.project_id, subscription)
        except BacklogUnavailable as e:
            self.counts_note = str(e)
            return None

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.stop()
            self._publisher = None
        if self._subscriber is not None:
            self._subscriber.close()
            self._subscriber = None


#: Pub/Sub's limits for one Publish request (10 MB; kept under it for the envelope).
MAX_REQUEST_MESSAGES = 1000
MAX_REQUEST_BYTES = 9 * 1024 * 1024


def _requests(messages: Sequence[Outgoing]) -> Iterator[list[dict[str, Any]]]:
    """Split ``messages`` into Publish requests within Pub/Sub's count and size limits."""
    chunk: list[dict[str, Any]] = []
    size = 0
    for m in messages:
        n = len(m.data) + sum(len(k) + len(v) for k, v in m.attributes.items())
        if chunk and (len(chunk) == MAX_REQUEST_MESSAGES or size + n > MAX_REQUEST_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append({"data": m.data, "attributes": m.attributes})
        size += n
    if chunk:
        yield chunk


def _deadline(seconds: float) -> int:
    return max(0, min(MAX_ACK_DEADLINE, round(seconds)))
