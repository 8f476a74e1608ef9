"""A subscription made the way plain gcloud makes one (no dead-letter topic, no policy), on the emulator.

The ancestor's README creates its topic and subscription with ``gcloud pubsub topics
create`` / ``subscriptions create`` and then runs ``python -m rslp.main common worker``.
Here they are made with the real client's plain ``create_topic`` / ``create_subscription``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog.testing
from google.api_core.exceptions import PermissionDenied
from google.cloud import pubsub_v1

from rslp import cli, log
from rslp.errors import ExitCode
from rslp.queue import Outgoing, dead_letter_name
from rslp.queue.pubsub import PubSubQueue
from rslp.task import Task
from rslp.worker.loop import Worker
from rslp.worker.retry import hold_for
from rslp.worker.settings import WorkerSettings
from tests.conftest import PROJECT
from tests.integration.workers import WorkerProc, publish_tasks


def _env() -> dict[str, str]:
    return {**os.environ, "WANDB_MODE": "disabled"}  # read late: the emulator fixture sets PUBSUB_EMULATOR_HOST


@pytest.fixture
def plain(emulator_host: str) -> Iterator[str]:
    """A topic and subscription (different names, as the ancestor's docs have them) made like plain gcloud."""
    name = f"q-{uuid.uuid4().hex[:8]}"
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = publisher.create_topic(name=f"projects/{PROJECT}/topics/{name}-topic")
    subscriber.create_subscription(name=f"projects/{PROJECT}/subscriptions/{name}-sub", topic=topic.name)
    yield name
    subscriber.close()


def _bad_then_good(q: PubSubQueue, topic: str, tmp_path: Path) -> list[Path]:
    """The issue's scenario: 4 bad messages ahead of 5 good ones; returns the good ones' outputs."""
    q.publish(
        topic,
        [
            Outgoing(b"this is not json"),
            Outgoing(b'{"project": "nope", "workflow": "write_file", "args": []}'),
            Outgoing(b'{"project": "common", "workflow": "format_disk", "args": []}'),
            Outgoing(b'{"project": "common", "workflow": "write_file", "args": ["only-one-arg"]}'),
        ],
    )
    good = [tmp_path / f"good{i}" for i in range(5)]
    publish_tasks(q, topic, [Task(project="common", workflow="write_file", args=[str(p), "ok"]) for p in good])
    return good


def _rslp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rslp.cli", *args], capture_output=True, text=True, timeout=120, env=_env()
    )


def test_poison_on_a_plain_subscription_is_dead_lettered_and_good_tasks_run(plain: str, tmp_path: Path) -> None:
    q = PubSubQueue(PROJECT, pull_timeout=2)
    sub = f"{plain}-sub"
    good = _bad_then_good(q, f"{plain}-topic", tmp_path)
    cmd = [sys.executable, "-m", "rslp.main", "common", "worker", "--project_id", PROJECT, "--subscription_id", sub]
    done = subprocess.run([*cmd, "--idle_timeout", "5"], capture_output=True, text=True, timeout=180, env=_env())
    assert done.returncode == ExitCode.OK, done.stderr[-3000:]
    assert [p.read_text() for p in good] == ["ok"] * 5
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events].count("dead_lettered") == 4
    attached = next(e for e in events if e["event"] == "dead_letters_attached")
    assert attached["created"][0] == f"topic {dead_letter_name(sub)}"
    bad_args = next(e for e in events if e["event"] == "dead_lettered" and e["kind"] == "permanent")
    assert "bad args ['only-one-arg'] for common/write_file" in bad_args["reason"]
    policy = pubsub_v1.SubscriberClient().get_subscription(subscription=q.subscription_path(sub)).dead_letter_policy
    assert policy.dead_letter_topic == q.topic_path(dead_letter_name(sub))

    listed = _rslp("dlq", "list", "--queue", f"pubsub://{PROJECT}", "--subscription", sub)
    assert listed.returncode == 0, listed.stderr
    assert "4 dead letters on" in listed.stdout
    for reason in ("not JSON", "unknown project 'nope'", "unknown workflow 'format_disk'", "bad args"):
        assert reason in listed.stdout


def test_a_second_worker_finds_the_dead_letters_in_place(plain: str) -> None:
    q = PubSubQueue(PROJECT)
    first = q.attach_dead_letters(f"{plain}-sub")
    assert len(first) == 3
    assert q.attach_dead_letters(f"{plain}-sub") == []


class _NoAdminRights(PubSubQueue):
    """The emulator has no IAM: this seam answers as Pub/Sub does a worker with only roles/pubsub.subscriber."""

    def attach_dead_letters(self, subscription: str, *, max_deliveries: int = 5) -> list[str]:
        raise PermissionDenied(f"User not authorized to perform this action (topic {dead_letter_name(subscription)})")


def test_worker_that_may_not_make_dead_letters_holds_bad_messages_and_goes_on(plain: str, tmp_path: Path) -> None:
    sub = f"{plain}-sub"
    q = _NoAdminRights(PROJECT, pull_timeout=2)
    good = _bad_then_good(q, f"{plain}-topic", tmp_path)
    settings = WorkerSettings(
        queue=f"pubsub://{PROJECT}", subscription=[sub], idle_timeout=4, lease_seconds=10, allow_diagnostics=True
    )
    log.setup()  # before capturing: a first setup() would replace the capture
    with structlog.testing.capture_logs() as events:
        worker = Worker(settings, queue=q)
        assert worker.run() == "idle"  # 4 bad messages in a row did not count as failures
    assert [p.read_text() for p in good] == ["ok"] * 5
    unavailable = [e for e in events if e["event"] == "dead_letters_unavailable"]
    assert len(unavailable) == 1 and "PermissionDenied" in unavailable[0]["error"]
    assert f"rslp setup --queue pubsub://{PROJECT} --subscription {sub}" in unavailable[0]["instead"]
    held = [e for e in events if e["event"] == "dead_letter_held"]
    assert len(held) == 4
    assert {e["dead_letter_topic"] for e in held} == {dead_letter_name(sub)}
    assert all(f"no topic '{dead_letter_name(sub)}'" in e["error"] for e in held)
    assert any("bad args ['only-one-arg']" in e["reason"] for e in held)


def test_dlq_list_on_a_plain_subscription_says_it_has_no_dead_letters_in_one_line(plain: str) -> None:
    listed = _rslp("dlq", "list", "--queue", f"pubsub://{PROJECT}", "--subscription", f"{plain}-sub")
    assert listed.returncode == ExitCode.USAGE
    lines = listed.stderr.strip().splitlines()
    assert len(lines) == 1, listed.stderr
    assert f"{plain}-sub-dead-letter does not exist" in lines[0]
    assert f"rslp setup --queue QUEUE --subscription {plain}-sub" in lines[0]


def test_task_in_backoff_costs_at_most_a_few_deliveries(plain: str, tmp_path: Path) -> None:
    """Without a retry policy a hand-back of under half a second was rounded to an ack deadline of 0
    and redelivered at once, dozens of times. The subscription here has a dead-letter policy (so the
    worker leaves it as it is) but, as gcloud makes one unless told, no retry policy."""
    q = PubSubQueue(PROJECT)
    sub = f"{plain}-sub"
    q.attach_dead_letters(sub)
    pubsub_v1.SubscriberClient().update_subscription(
        request={"subscription": {"name": q.subscription_path(sub)}, "update_mask": {"paths": ["retry_policy"]}}
    )
    w = WorkerProc(f"pubsub://{PROJECT}", sub, idle_timeout=8)
    w.wait_for("dead_letters_ready", timeout=60)  # pulling now
    out = tmp_path / "after-backoff"
    not_before = datetime.now(UTC) + timedelta(seconds=1.3)
    task = Task(project="common", workflow="write_file", args=[str(out), "ok"], not_before=not_before)
    publish_tasks(q, f"{plain}-topic", [task])
    assert w.wait(timeout=120) == 0
    assert out.read_text() == "ok"
    assert w.count("received") <= 3, w.count("received")


def test_hold_is_whole_seconds_rounded_up_and_capped() -> None:
    assert [hold_for(s) for s in (0.01, 0.49, 1.2, 599.5, 86400)] == [1, 1, 2, 600, 600]


def test_setup_refuses_a_second_subscription_on_a_topic_that_has_one(plain: str, capsys) -> None:
    assert cli.main(["setup", "--queue", f"pubsub://{PROJECT}", "--topics", f"{plain}-topic"]) == ExitCode.USAGE
    err = capsys.readouterr().err.strip()
    assert f"already has subscription {plain}-sub" in err and f"--subscription {plain}-sub" in err
    assert PubSubQueue(PROJECT).subscriptions_of(f"{plain}-topic") == [f"{plain}-sub"]


def test_setup_subscription_gives_an_existing_subscription_its_dead_letters(plain: str, capsys) -> None:
    q = PubSubQueue(PROJECT)
    sub = f"{plain}-sub"
    assert cli.main(["setup", "--queue", f"pubsub://{PROJECT}", "--subscription", sub]) == 0
    assert f"created topic {dead_letter_name(sub)}" in capsys.readouterr().out
    policy = q.subscriber.get_subscription(subscription=q.subscription_path(sub)).dead_letter_policy
    assert policy.dead_letter_topic == q.topic_path(dead_letter_name(sub))
    assert cli.main(["setup", "--queue", f"pubsub://{PROJECT}", "--subscription", sub]) == 0
    assert "already has them" in capsys.readouterr().out
    assert q.subscriptions_of(f"{plain}-topic") == [sub]
