"""``rslp setup``: create the topics and subscriptions a fleet pulls from (idempotent).

Each topic gets a subscription of the same name with a dead-letter policy (after
``max_deliveries`` deliveries without an ack, Pub/Sub moves the message to
``<subscription>-dead-letter``, which catches workers that die outright) and a retry
policy, plus a subscription on the dead-letter topic so that dead letters are kept.
On Pub/Sub it also grants the service agent the roles dead lettering needs
(:mod:`rslp.queue.iam`), or prints the exact ``gcloud`` commands when it may not.

A topic that already has a subscription (e.g. one made with gcloud, as the ancestor's
docs do) is not given a second one: every message would then be delivered twice.
``--subscription S`` gives that existing subscription its dead letters instead.
"""

from __future__ import annotations

from rslp.errors import QueueResourceError
from rslp.queue import dead_letter_name, open_queue
from rslp.queue.base import MAX_DELIVERIES
from rslp.queue.iam import EMULATOR_NOTE, grant_dead_letter_roles, on_emulator
from rslp.queue.pubsub import PubSubQueue


def setup(
    queue: str,
    topics: str | None = None,
    config: str | None = None,
    subscription: str | None = None,
    max_deliveries: int = MAX_DELIVERIES,
    ack_deadline: int = 60,
    project_number: int | None = None,
) -> list[str]:
    """Create topics and subscriptions (subscription id = topic id) with dead-letter topics.

    Args:
        queue: pubsub://PROJECT_ID or local://PATH.db.
        topics: comma-separated topic ids to create (each >= 3 characters).
        config: a pipeline.yaml; its step topics are created too.
        subscription: an existing subscription (e.g. made with gcloud) to give its
            dead-letter topic and policy; with one --topics, created on it if missing.
        max_deliveries: deliveries before Pub/Sub dead-letters a message on its own (5-100; see
            :data:`~rslp.queue.base.MAX_DELIVERIES` for why the default is generous).
        ack_deadline: the subscriptions' default ack deadline in seconds.
        project_number: the GCP project's number (`gcloud projects describe PROJECT`): with it,
            setup grants the Pub/Sub service agent its dead-letter roles (needs roles/pubsub.admin);
            without it, or without that role, it prints the gcloud commands that do.
    """
    if subscription is not None:
        return [_attach(queue, subscription, topics, max_deliveries, ack_deadline)]
    names = [t for t in (topics or "").split(",") if t]
    if config is not None:
        from rslp.pipeline.config import load_pipeline_config

        names += sorted(set(load_pipeline_config(config).topics.values()) - set(names))
    if not names:
        raise ValueError("nothing to set up: give --topics or --config")
    for name in names:
        if len(name) < 3:
            raise ValueError(f"topic id {name!r} is too short: Pub/Sub needs at least 3 characters")
    commands: list[str] = []
    with open_queue(queue, create=True) as q:
        for name in names:
            others = sorted(set(q.subscriptions_of(name)) - {name})
            if others:
                raise ValueError(
                    f"topic {name} already has subscription {', '.join(others)}; a second one would deliver every "
                    f"message twice: give it dead letters with --subscription {others[0]}"
                )
        for name in names:
            q.setup(name, name, max_deliveries=max_deliveries, ack_deadline=ack_deadline)
            print(f"{name}: topic, subscription and dead letters at {dead_letter_name(name)}")
            if isinstance(q, PubSubQueue) and not on_emulator():
                commands += grant_dead_letter_roles(q, name, project_number)
    if isinstance(q, PubSubQueue) and on_emulator():
        print(EMULATOR_NOTE)
    elif commands:
        print(
            "dead lettering needs the Pub/Sub service agent to publish to each dead-letter topic and"
            " subscribe to each subscription; setup could not grant that here. Run:"
        )
        print("\n".join(f"  {c}" for c in commands))
    elif isinstance(q, PubSubQueue):
        print("the Pub/Sub service agent holds its dead-letter roles")
    return names


def _attach(queue: str, subscription: str, topics: str | None, max_deliveries: int, ack_deadline: int) -> str:
    """Give ``subscription`` its dead letters; create it on the one topic in ``topics`` if it does not exist."""
    from google.api_core.exceptions import NotFound

    with open_queue(queue, create=True) as q:
        try:
            created = q.attach_dead_letters(subscription, max_deliveries=max_deliveries)
        except (NotFound, QueueResourceError):  # no such subscription (Pub/Sub; the embedded queue)
            names = [t for t in (topics or "").split(",") if t]
            if len(names) != 1:
                raise ValueError(
                    f"subscription {subscription} does not exist; to create it, give its topic with --topics TOPIC"
                ) from None
            q.setup(names[0], subscription, max_deliveries=max_deliveries, ack_deadline=ack_deadline)
            created = [f"subscription {subscription} on topic {names[0]}", "its dead letters"]
    done = ", ".join(created) if created else "nothing: it already has them"
    print(f"{subscription}: dead letters at {dead_letter_name(subscription)}; created {done}")
    return subscription
