"""`rslp setup` and least privilege: the service agent's dead-letter roles, and a worker without subscriptions.get."""

from __future__ import annotations

from typing import Any

import pytest
from google.api_core import exceptions as api
from google.iam.v1 import policy_pb2

from rslp.queue.iam import EMULATOR_NOTE, gcloud_commands, grant_dead_letter_roles, service_agent
from rslp.queue.pubsub import PubSubQueue
from rslp.setup import setup
from tests.conftest import PROJECT

AGENT = "serviceAccount:service-123456789@gcp-sa-pubsub.iam.gserviceaccount.com"


def test_setup_on_the_emulator_says_in_one_line_that_there_is_no_iam(
    emulator_host: str, topic: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """It once printed gcloud commands that fail against the emulator, two per topic."""
    setup(f"pubsub://{PROJECT}", topics=topic, project_number=123456789)
    out = capsys.readouterr().out
    assert "add-iam-policy-binding" not in out and out.splitlines()[-1] == EMULATOR_NOTE
    assert PubSubQueue(PROJECT).topic_of(topic) == topic  # created all the same


def test_the_gcloud_commands_are_exact_and_say_how_to_find_the_project_number() -> None:
    assert gcloud_commands(PROJECT, "t-sub", 123456789) == [
        f"gcloud pubsub topics add-iam-policy-binding t-sub-dead-letter --project={PROJECT}"
        f" --member={AGENT} --role=roles/pubsub.publisher",
        f"gcloud pubsub subscriptions add-iam-policy-binding t-sub --project={PROJECT}"
        f" --member={AGENT} --role=roles/pubsub.subscriber",
    ]
    number = f"$(gcloud projects describe {PROJECT} --format='value(projectNumber)')"
    assert f"--member=serviceAccount:service-{number}@gcp-sa-pubsub.iam.gserviceaccount.com" in " ".join(
        gcloud_commands(PROJECT, "t-sub", None)
    )


class FakeIam:
    """Stands in for the IAM methods of a client (the emulator has none): policies kept in memory."""

    def __init__(self) -> None:
        self.policies: dict[str, policy_pb2.Policy] = {}
        self.sets = 0

    def get_iam_policy(self, request: dict[str, Any], **kwargs: Any) -> policy_pb2.Policy:
        policy = policy_pb2.Policy()
        policy.CopyFrom(self.policies.get(request["resource"], policy_pb2.Policy()))
        return policy

    def set_iam_policy(self, request: dict[str, Any], **kwargs: Any) -> policy_pb2.Policy:
        self.sets += 1
        self.policies[request["resource"]] = request["policy"]
        return request["policy"]

    def install(self, client: Any, monkeypatch: pytest.MonkeyPatch) -> FakeIam:
        monkeypatch.setattr(client, "get_iam_policy", self.get_iam_policy)
        monkeypatch.setattr(client, "set_iam_policy", self.set_iam_policy)
        return self


def test_setup_grants_the_service_agent_its_roles_once(
    emulator_host: str, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    q = PubSubQueue(PROJECT)
    q.setup(topic, topic)
    topics, subs = FakeIam().install(q.publisher, monkeypatch), FakeIam().install(q.subscriber, monkeypatch)
    topics.policies[q.topic_path(f"{topic}-dead-letter")] = policy_pb2.Policy(
        bindings=[policy_pb2.Binding(role="roles/pubsub.viewer", members=["user:someone@example.com"])]
    )
    assert grant_dead_letter_roles(q, topic, 123456789) == []
    assert grant_dead_letter_roles(q, topic, 123456789) == []  # idempotent
    dlq = {(b.role, tuple(b.members)) for b in topics.policies[q.topic_path(f"{topic}-dead-letter")].bindings}
    assert dlq == {("roles/pubsub.viewer", ("user:someone@example.com",)), ("roles/pubsub.publisher", (AGENT,))}
    sub = {(b.role, tuple(b.members)) for b in subs.policies[q.subscription_path(topic)].bindings}
    assert sub == {("roles/pubsub.subscriber", (service_agent(123456789),))}
    assert topics.sets == 1 and subs.sets == 1
    q.close()


def test_setup_without_permission_to_grant_prints_the_commands(
    emulator_host: str, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    q = PubSubQueue(PROJECT)
    q.setup(topic, topic)

    def denied(**kwargs: Any) -> None:
        raise api.PermissionDenied("injected: caller lacks pubsub.topics.getIamPolicy")

    monkeypatch.setattr(q.publisher, "get_iam_policy", denied)
    commands = grant_dead_letter_roles(q, topic, 42)
    assert len(commands) == 2 and all("service-42@gcp-sa-pubsub" in c for c in commands)
    q.close()


def test_worker_without_subscriptions_get_finds_the_topic_by_setup_naming(
    emulator_host: str, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """roles/pubsub.subscriber does not grant subscriptions.get: a retry still goes back to the topic."""
    q = PubSubQueue(PROJECT)
    q.setup(topic, topic)

    def denied(**kwargs: Any) -> None:
        raise api.PermissionDenied("injected: caller lacks pubsub.subscriptions.get")

    monkeypatch.setattr(q.subscriber, "get_subscription", denied)
    assert q.topic_of(topic) == topic
    q.close()
