"""Google Cloud Pub/Sub backend (the real service, or the emulator via PUBSUB_EMULATOR_HOST).

Pulls are synchronous, one message at a time, with the lease set at once by
``modify_ack_deadline`` and then extended by the worker's heartbeat. Streaming pull is
deliberately not used: measured against the emulator it ignores flow control, keeps
feeding a dead connection, and silently drops leases after ``max_lease_duration``
(ARCHITECTURE.md, field notes). A worker serving several subscriptions polls them in
order, then waits on all at once (:meth:`PubSubQueue.pull_first`, rslp/queue/preferred.py),
so an empty subscription never costs a pull wait.

Publishing sends each chunk of up to 1,000 messages (and under Pub/Sub's 10 MB request
limit) as one ``Publish`` request through the client's generated API, and the
response's message ids are the confirmation. Measured against the emulator
(bench/RESULTS.md), this is faster than the high-level client's per-message
``publish()`` futures, whose Python overhead dominates at 100k messages, and a worker's
single downstream message does not wait for a batch to fill. Nothing is buffered, so
nothing can be lost at exit.

Every call goes through :class:`rslp.weather.Weather`: transient errors are retried
with jittered backoff (the client's own retry is turned off, so there is one policy),
permanent ones stop at once naming the resource and the IAM role the call needs. A
worker needs only ``roles/pubsub.subscriber`` on its subscriptions and
``roles/pubsub.publisher`` on the topics it writes; ``rslp setup`` needs
``roles/pubsub.editor`` (and ``roles/pubsub.admin`` to grant the dead-letter bindings).

Clients are created lazily in the process that uses them: gRPC does not survive fork.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from rslp import log
from rslp.errors import QueueResourceError
from rslp.queue.base import (
    MAX_DELIVERIES,
    LeaseLostError,
    Outgoing,
    Queue,
    QueueCounts,
    Received,
    dead_letter_name,
    missing_subscription_hint,
    setup_command,
)
from rslp.queue.preferred import PreferredPull
from rslp.weather import EDITOR, PUBLISHER, SUBSCRIBER, CloudRefusedError, Weather

if TYPE_CHECKING:
    import google.cloud.pubsub_v1 as pubsub_v1

# The poll's return_immediately is deprecated in the API but still served, and nothing
# else returns at once without risking a message leased to a caller that gave up on it.
warnings.filterwarnings("ignore", message="The return_immediately flag is deprecated", category=DeprecationWarning)

#: Pub/Sub's ceiling for one ack-deadline change.
MAX_ACK_DEADLINE = 600


class PubSubQueue(Queue):
    """Pub/Sub in project ``project_id``; topic and subscription names are short ids."""

    def __init__(
        self,
        project_id: str,
        pull_timeout: float = 5.0,
        publish_timeout: float = 120.0,
        weather: Weather | None = None,
    ) -> None:
        self.project_id = project_id
        self.pull_timeout = pull_timeout
        self.publish_timeout = publish_timeout
        self.weather = weather or Weather()
        self._publisher: pubsub_v1.PublisherClient | None = None
        self._subscriber: pubsub_v1.SubscriberClient | None = None
        self._topics: dict[str, str] = {}
        self._preferred: PreferredPull | None = None

    @property
    def publisher(self) -> pubsub_v1.PublisherClient:
        if self._publisher is None:
            import google.cloud.pubsub_v1 as pubsub_v1

            with _credentials():
                self._publisher = pubsub_v1.PublisherClient()
        return self._publisher

    @property
    def subscriber(self) -> pubsub_v1.SubscriberClient:
        if self._subscriber is None:
            import google.cloud.pubsub_v1 as pubsub_v1

            with _credentials():
                self._subscriber = pubsub_v1.SubscriberClient()
        return self._subscriber

    def topic_path(self, topic: str) -> str:
        return f"projects/{self.project_id}/topics/{topic}"

    def subscription_path(self, subscription: str) -> str:
        return f"projects/{self.project_id}/subscriptions/{subscription}"

    @contextlib.contextmanager
    def _named(self, kind: str, name: str, role: str | None = None) -> Iterator[None]:
        """A missing ``kind`` ``name`` (NOT_FOUND) in one line: its path, role and the command that creates it."""
        from google.api_core.exceptions import NotFound

        try:
            yield
        except CloudRefusedError as e:
            if not isinstance(e.__cause__, NotFound):
                raise  # PERMISSION_DENIED and the rest already name the resource and the role
            path = self.topic_path(name) if kind == "topic" else self.subscription_path(name)
            needs = f"; using it needs {role}" if role else ""
            url = f"pubsub://{self.project_id}"
            fix = (
                missing_subscription_hint(url, name, self._subscription_names())
                if kind == "subscription"
                else f"create it with: {setup_command(url, name)}"
            )
            raise CloudRefusedError(f"no {kind} {name!r} in project {self.project_id} ({path}{needs}); {fix}") from (
                e.__cause__
            )

    def _subscription_names(self, limit: int = 1000) -> list[str]:
        """Up to ``limit`` of the project's subscription names, to name them when one is missing ([] if not allowed)."""
        import itertools

        from google.api_core.exceptions import GoogleAPICallError

        try:
            listing = self.subscriber.list_subscriptions(
                request={"project": f"projects/{self.project_id}"}, timeout=self.pull_timeout
            )
            return [s.name.rsplit("/", 1)[-1] for s in itertools.islice(listing, limit)]
        except GoogleAPICallError:
            return []

    def setup(
        self, topic: str, subscription: str, *, max_deliveries: int = MAX_DELIVERIES, ack_deadline: int = 60
    ) -> None:

        dlq = dead_letter_name(subscription)
        for name in (topic, dlq):
            self._create(
                "create topic", self.topic_path(name), self.publisher.create_topic, {"name": self.topic_path(name)}
            )
        subscriptions: list[dict[str, Any]] = [
            {
                "name": self.subscription_path(subscription),
                "topic": self.topic_path(topic),
                "ack_deadline_seconds": ack_deadline,
                "dead_letter_policy": {
                    "dead_letter_topic": self.topic_path(dlq),
                    "max_delivery_attempts": max_deliveries,
                },
                "retry_policy": _RETRY_POLICY,
            },
            _keeper(self.subscription_path(dlq), self.topic_path(dlq)),
        ]
        for request in subscriptions:
            self._create("create subscription", request["name"], self.subscriber.create_subscription, request)

    def _create(self, what: str, resource: str, create: Callable[..., Any], request: dict[str, Any]) -> None:
        from google.api_core.exceptions import AlreadyExists

        def call() -> None:
            with contextlib.suppress(AlreadyExists):
                create(request=request, retry=None)

        self.weather.call(call, what=what, resource=resource, role=EDITOR)

    def attach_dead_letters(self, subscription: str, *, max_deliveries: int = MAX_DELIVERIES) -> list[str]:
        """Give a subscription made elsewhere (e.g. by plain gcloud) its dead letters; see rslp.queue.dead_letters."""
        from google.api_core.exceptions import AlreadyExists

        dlq = dead_letter_name(subscription)
        sub = self.subscriber.get_subscription(
            request={"subscription": self.subscription_path(subscription)}, timeout=self.pull_timeout
        )
        self._topics[subscription] = sub.topic.rsplit("/", 1)[-1]
        if sub.dead_letter_policy.dead_letter_topic:
            # Set up already (rslp setup, or an earlier worker): no admin calls, which a
            # worker with only roles/pubsub.subscriber would be refused.
            return []
        created: list[str] = []
        with contextlib.suppress(AlreadyExists):
            self.publisher.create_topic(request={"name": self.topic_path(dlq)})
            created.append(f"topic {dlq}")
        with contextlib.suppress(AlreadyExists):
            self.subscriber.create_subscription(request=_keeper(self.subscription_path(dlq), self.topic_path(dlq)))
            created.append(f"subscription {dlq}")
        update: dict[str, Any] = {
            "name": sub.name,
            "dead_letter_policy": {
                "dead_letter_topic": self.topic_path(dlq),
                "max_delivery_attempts": max_deliveries,
            },
        }
        paths = ["dead_letter_policy"]
        if not sub.retry_policy.maximum_backoff:
            update["retry_policy"] = _RETRY_POLICY
            paths.append("retry_policy")
        self.subscriber.update_subscription(request={"subscription": update, "update_mask": {"paths": paths}})
        created.append(f"{' and '.join(p.replace('_', '-') for p in paths)} on {subscription}")
        return created

    def subscriptions_of(self, topic: str) -> list[str]:
        from google.api_core.exceptions import NotFound

        try:
            names = self.publisher.list_topic_subscriptions(request={"topic": self.topic_path(topic)})
            return [n.rsplit("/", 1)[-1] for n in names]
        except NotFound:
            return []

    def topic_of(self, subscription: str) -> str:
        """The subscription's topic; by ``rslp setup``'s naming where the caller may not look it up.

        ``subscriptions.get`` needs ``roles/pubsub.viewer``, which a worker running with
        only ``roles/pubsub.subscriber`` lacks: it then assumes the topic has the
        subscription's name, as ``rslp setup`` makes them, and says so once.
        """
        from google.api_core.exceptions import PermissionDenied

        if subscription not in self._topics:
            path = self.subscription_path(subscription)
            try:
                with self._named("subscription", subscription, SUBSCRIBER):
                    sub = self.weather.call(
                        lambda: self.subscriber.get_subscription(
                            request={"subscription": path}, retry=None, timeout=self.pull_timeout
                        ),
                        what="look up subscription",
                        resource=path,
                    )
                self._topics[subscription] = sub.topic.rsplit("/", 1)[-1]
            except CloudRefusedError as e:
                if not isinstance(e.__cause__, PermissionDenied):
                    raise
                log.get("rslp.queue").warning(
                    "topic_assumed",
                    subscription=subscription,
                    topic=subscription,
                    reason="no roles/pubsub.viewer to look it up; rslp setup names a topic's subscription after it",
                )
                self._topics[subscription] = subscription
        return self._topics[subscription]

    def publish(self, topic: str, messages: Sequence[Outgoing]) -> list[str]:
        from google.pubsub_v1.services.publisher.client import PublisherClient as GapicPublisherClient

        path = self.topic_path(topic)
        ids: list[str] = []
        for chunk in _requests(messages):
            # The generated client's Publish (the high-level client subclasses it and
            # overrides publish() with its per-message batching).
            request = {"topic": path, "messages": chunk}
            with self._named("topic", topic, PUBLISHER):
                response = self.weather.call(
                    functools.partial(
                        GapicPublisherClient.publish,
                        self.publisher,
                        request=request,
                        timeout=self.publish_timeout,
                        retry=None,
                    ),
                    what="publish to",
                    resource=path,
                    role=PUBLISHER,
                )
            ids += response.message_ids
        return ids

    def pull(self, subscription: str, lease_seconds: float, max_messages: int = 1, wait: float = 0.0) -> list[Received]:
        return self._pull(subscription, lease_seconds, max_messages, max(1.0, wait or self.pull_timeout), False)

    def poll(self, subscription: str, lease_seconds: float) -> list[Received]:
        """One message if ``subscription`` has one available right now; never waits for one to arrive."""
        return self._pull(subscription, lease_seconds, 1, self.pull_timeout, True)

    def pull_first(self, subscriptions: Sequence[str], lease_seconds: float, wait: float = 0.0) -> Received | None:
        """Poll each subscription in order, then one wait on all of them (:mod:`rslp.queue.preferred`)."""
        if self._preferred is None:
            self._preferred = PreferredPull(self)
        return self._preferred.pull_first(subscriptions, lease_seconds, wait or self.pull_timeout)

    def _pull(
        self, subscription: str, lease_seconds: float, max_messages: int, timeout: float, immediate: bool
    ) -> list[Received]:
        from google.api_core.exceptions import DeadlineExceeded

        path = self.subscription_path(subscription)
        request: dict[str, Any] = {"subscription": path, "max_messages": max_messages}
        if immediate:
            request["return_immediately"] = True

        def call() -> list[Any]:
            try:
                response = self.subscriber.pull(request=request, timeout=timeout, retry=None)
            except DeadlineExceeded:  # the wait for a message ran out: an empty pull, not an error
                return []
            return list(response.received_messages)

        with self._named("subscription", subscription, SUBSCRIBER):
            received = self.weather.call(call, what="pull from", resource=path, role=SUBSCRIBER)
        if not received:
            return []
        ack_ids = [r.ack_id for r in received]
        self._call_subscriber("modify_ack_deadline", path, ack_ids, ack_deadline_seconds=_deadline(lease_seconds))
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
            for r in received
        ]

    def _call_subscriber(self, method: str, path: str, ack_ids: list[str], **fields: Any) -> None:
        """``acknowledge`` or ``modify_ack_deadline`` on ``ack_ids``, through the weather."""
        rpc = getattr(self.subscriber, method)
        request = {"subscription": path, "ack_ids": ack_ids, **fields}
        self.weather.call(lambda: rpc(request=request, retry=None), what=method, resource=path, role=SUBSCRIBER)

    def extend(self, message: Received, lease_seconds: float) -> None:
        """One extension; transient errors are raised as they are, for the lease keeper to retry.

        The lease keeper knows when the lease runs out, so it owns the retry window. A
        permanent refusal (an ack id Pub/Sub no longer knows) means the lease is gone.
        """
        from google.api_core.exceptions import BadRequest, NotFound

        request = {
            "subscription": self.subscription_path(message.subscription),
            "ack_ids": [message.lease_id],
            "ack_deadline_seconds": _deadline(lease_seconds),
        }
        try:
            self.subscriber.modify_ack_deadline(request=request, retry=None)
        except (BadRequest, NotFound) as e:
            raise LeaseLostError(f"could not extend lease on {message.message_id}: {e}") from e

    def ack(self, message: Received) -> None:
        path = self.subscription_path(message.subscription)
        self._call_subscriber("acknowledge", path, [message.lease_id])

    def nack(self, message: Received, delay: float = 0.0) -> None:
        path = self.subscription_path(message.subscription)
        self._call_subscriber("modify_ack_deadline", path, [message.lease_id], ack_deadline_seconds=_deadline(delay))

    def counts(self, subscription: str) -> QueueCounts | None:
        """Backlog from Cloud Monitoring where credentials allow; else None, and :attr:`counts_note` says why."""
        from rslp.queue.monitoring import BacklogUnavailable, pubsub_backlog

        try:
            return pubsub_backlog(self.project_id, subscription)
        except BacklogUnavailable as e:
            self.counts_note = str(e)
            return None

    def close(self) -> None:
        if self._preferred is not None:
            self._preferred.close()
            self._preferred = None
        if self._publisher is not None:
            self._publisher.stop()
            self._publisher = None
        if self._subscriber is not None:
            self._subscriber.close()
            self._subscriber = None


@contextlib.contextmanager
def _credentials() -> Iterator[None]:
    """No credentials is the first thing a new user meets: say both ways out in one line."""
    from google.auth.exceptions import DefaultCredentialsError

    try:
        yield
    except DefaultCredentialsError:
        raise QueueResourceError(
            "no Google Cloud credentials: run `gcloud auth application-default login`, or for the emulator "
            "export PUBSUB_EMULATOR_HOST=127.0.0.1:8085 (`make emulator` starts one there)"
        ) from None


#: Without a retry policy a nack is redelivered at once, in a tight loop; a short
#: ceiling keeps a crashed worker's task from waiting long for its retry.
_RETRY_POLICY = {"minimum_backoff": {"seconds": 1}, "maximum_backoff": {"seconds": 10}}


def _keeper(name: str, topic: str) -> dict[str, Any]:
    """The subscription on a dead-letter topic, which keeps dead letters for ``rslp dlq``.

    Pub/Sub drops messages published to a topic with no subscription.
    """
    return {
        "name": name,
        "topic": topic,
        "ack_deadline_seconds": 60,
        "message_retention_duration": {"seconds": 7 * 24 * 3600},
    }


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
