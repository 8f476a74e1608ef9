"""The IAM bindings Pub/Sub's own service agent needs for dead lettering.

A subscription's dead-letter policy is carried out by the Pub/Sub service agent
(``service-PROJECT_NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com``), not by the
worker: it must hold ``roles/pubsub.publisher`` on the dead-letter topic and
``roles/pubsub.subscriber`` on the subscription, or messages that exhaust their
deliveries are silently never moved. ``rslp setup`` adds both bindings with
``get_iam_policy`` / ``set_iam_policy`` when it can (this needs ``roles/pubsub.admin``
and the project number); where it cannot (no number given, no permission) it prints
the exact ``gcloud`` commands. The emulator has no IAM and moves dead letters without
any binding, so there it says so in one line instead of printing commands that fail.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions as api

from rslp.queue.base import dead_letter_name
from rslp.queue.pubsub import PubSubQueue
from rslp.weather import PUBLISHER, SUBSCRIBER, CloudRefusedError

ADMIN = "roles/pubsub.admin"
#: Said by ``rslp setup`` on the emulator, in place of grants and commands that cannot work there.
EMULATOR_NOTE = (
    "the Pub/Sub emulator has no IAM and moves dead letters without it: nothing to grant "
    "(on Pub/Sub, setup grants the service agent its dead-letter roles or prints the gcloud commands)"
)


def on_emulator() -> bool:
    """Whether Pub/Sub calls go to the emulator (``PUBSUB_EMULATOR_HOST`` is set)."""
    return bool(os.environ.get("PUBSUB_EMULATOR_HOST"))


def service_agent(project_number: int | str) -> str:
    """The IAM member of the Pub/Sub service agent of the project numbered ``project_number``."""
    return f"serviceAccount:service-{project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"


@dataclass(frozen=True)
class Binding:
    """``role`` for the service agent on one topic or subscription (``kind`` as gcloud names it)."""

    kind: str  # "topics" or "subscriptions"
    name: str
    role: str

    def gcloud(self, project_id: str, member: str) -> str:
        return (
            f"gcloud pubsub {self.kind} add-iam-policy-binding {self.name} --project={project_id}"
            f" --member={member} --role={self.role}"
        )


def dead_letter_bindings(subscription: str) -> list[Binding]:
    """What the service agent needs so that ``subscription``'s dead-letter policy works."""
    return [
        Binding("topics", dead_letter_name(subscription), PUBLISHER),
        Binding("subscriptions", subscription, SUBSCRIBER),
    ]


def gcloud_commands(project_id: str, subscription: str, project_number: int | None) -> list[str]:
    """The exact commands that grant the bindings, for an operator who may."""
    number = project_number or f"$(gcloud projects describe {project_id} --format='value(projectNumber)')"
    return [b.gcloud(project_id, service_agent(number)) for b in dead_letter_bindings(subscription)]


def grant_dead_letter_roles(q: PubSubQueue, subscription: str, project_number: int | None) -> list[str]:
    """Add the service agent's bindings for ``subscription``; returns the commands still to run (none if done).

    Existing bindings are kept; a binding already there is not added twice.
    """
    if project_number is None:
        return gcloud_commands(q.project_id, subscription, None)
    member = service_agent(project_number)
    try:
        for binding in dead_letter_bindings(subscription):
            if binding.kind == "topics":
                _add(q, q.publisher, q.topic_path(binding.name), binding.role, member)
            else:
                _add(q, q.subscriber, q.subscription_path(binding.name), binding.role, member)
    except (CloudRefusedError, api.MethodNotImplemented):
        return gcloud_commands(q.project_id, subscription, project_number)
    return []


def _add(q: PubSubQueue, client: Any, resource: str, role: str, member: str) -> None:
    policy = q.weather.call(
        lambda: client.get_iam_policy(request={"resource": resource}, retry=None),
        what="read IAM policy of",
        resource=resource,
        role=ADMIN,
    )
    for binding in policy.bindings:
        if binding.role == role and member in binding.members:
            return
    policy.bindings.add(role=role, members=[member])
    q.weather.call(
        lambda: client.set_iam_policy(request={"resource": resource, "policy": policy}, retry=None),
        what="set IAM policy of",
        resource=resource,
        role=ADMIN,
    )
