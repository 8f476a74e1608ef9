"""A cloud's bad minutes on the real Pub/Sub client (emulator): transient errors ridden out, permanent ones not.

Errors are injected into the real client: its methods are wrapped to raise a
``google.api_core`` (or ``google.auth``) exception the first few times, then to call
through to the emulator.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions as api
from google.auth import exceptions as auth
from google.pubsub_v1.services.publisher.client import PublisherClient as GapicPublisherClient

from rslp.errors import ExitCode
from rslp.queue import Outgoing
from rslp.queue.pubsub import PubSubQueue
from rslp.task import Task
from rslp.testing.emulator import free_port, running_emulator
from rslp.weather import CloudRefusedError, CloudUnavailableError, Weather
from tests.conftest import PROJECT
from tests.integration.tcp_proxy import TcpProxy
from tests.integration.workers import WorkerProc, publish_tasks, write_job

FAST = Weather(patience=30, first_wait=0.01, max_wait=0.05)

TRANSIENT: list[Callable[[], BaseException]] = [
    lambda: api.ServiceUnavailable("injected"),
    lambda: api.DeadlineExceeded("injected"),
    lambda: api.Aborted("injected"),
    lambda: api.InternalServerError("injected"),
    lambda: api.Unknown("injected"),
    lambda: api.ResourceExhausted("injected"),
    lambda: auth.RefreshError("injected: token refresh failed"),
    lambda: auth.TransportError("injected: metadata server unreachable"),
]
PERMANENT: list[Callable[[], BaseException]] = [
    lambda: api.NotFound("injected"),
    lambda: api.PermissionDenied("injected"),
    lambda: api.InvalidArgument("injected"),
]


class Flaky:
    """Wraps a client method: raises ``make()`` the first ``times`` calls, then calls through."""

    def __init__(self, real: Callable[..., Any], make: Callable[[], BaseException], times: int) -> None:
        self.real, self.make, self.left, self.calls = real, make, times, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.left > 0:
            self.left -= 1
            raise self.make()
        return self.real(*args, **kwargs)


@pytest.fixture
def pubsub(emulator_host: str) -> Iterator[PubSubQueue]:
    q = PubSubQueue(PROJECT, pull_timeout=2, weather=FAST)
    yield q
    q.close()


def _inject(
    q: PubSubQueue, monkeypatch: pytest.MonkeyPatch, make: Callable[[], BaseException], times: int
) -> dict[str, Flaky]:
    """Make every queue RPC of ``q`` fail ``times`` times with ``make()`` before it works."""
    flaky = {}
    for client, method in [
        (q.publisher, "create_topic"),
        (q.subscriber, "create_subscription"),
        (q.subscriber, "pull"),
        (q.subscriber, "modify_ack_deadline"),
        (q.subscriber, "acknowledge"),
        (q.subscriber, "get_subscription"),
    ]:
        flaky[method] = Flaky(getattr(client, method), make, times)
        monkeypatch.setattr(client, method, flaky[method])
    flaky["publish"] = Flaky(GapicPublisherClient.publish, make, times)
    monkeypatch.setattr(GapicPublisherClient, "publish", flaky["publish"])
    return flaky


@pytest.mark.parametrize("make", TRANSIENT, ids=lambda m: m().__class__.__name__)
def test_every_queue_call_rides_out_each_transient_error(
    pubsub: PubSubQueue, topic: str, monkeypatch: pytest.MonkeyPatch, make: Callable[[], BaseException]
) -> None:
    flaky = _inject(pubsub, monkeypatch, make, times=2)
    pubsub.setup(topic, topic)
    pubsub.publish(topic, [Outgoing(b"weather")])
    got = []
    deadline = time.monotonic() + 30
    while not got and time.monotonic() < deadline:
        got = pubsub.pull(topic, 30)
    assert [m.data for m in got] == [b"weather"]
    pubsub.ack(got[0])
    assert pubsub.topic_of(topic) == topic
    for method, f in flaky.items():
        assert f.left == 0 and f.calls >= 3, f"{method} was not retried past its injected errors"


@pytest.mark.parametrize("make", PERMANENT, ids=lambda m: m().__class__.__name__)
def test_permanent_error_fails_at_once_naming_resource_and_role(
    pubsub: PubSubQueue, topic: str, monkeypatch: pytest.MonkeyPatch, make: Callable[[], BaseException]
) -> None:
    pubsub.setup(topic, topic)
    slow = PubSubQueue(PROJECT, pull_timeout=2, weather=Weather(patience=60))
    flaky = _inject(slow, monkeypatch, make, times=100)
    start = time.monotonic()
    with pytest.raises(CloudRefusedError) as e:
        slow.pull(topic, 30)
    assert time.monotonic() - start < 5
    assert flaky["pull"].calls == 1
    assert f"projects/{PROJECT}/subscriptions/{topic}" in str(e.value)
    assert "roles/pubsub.subscriber" in str(e.value)
    assert e.value.exit_code == ExitCode.PERMANENT_QUEUE_ERROR
    slow.close()


def test_publish_to_a_missing_topic_fails_fast_naming_the_publisher_role(emulator_host: str) -> None:
    q = PubSubQueue(PROJECT, weather=Weather(patience=600))
    start = time.monotonic()
    with pytest.raises(CloudRefusedError, match=r"roles/pubsub\.publisher") as e:
        q.publish("no-such-topic-here", [Outgoing(b"x")])
    assert time.monotonic() - start < 10
    assert f"projects/{PROJECT}/topics/no-such-topic-here" in str(e.value)
    q.close()


def test_transient_errors_past_patience_raise_unavailable(
    pubsub: PubSubQueue, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pubsub.setup(topic, topic)
    q = PubSubQueue(PROJECT, pull_timeout=2, weather=Weather(patience=1, first_wait=0.05, max_wait=0.2))
    _inject(q, monkeypatch, lambda: api.ServiceUnavailable("injected"), times=10_000)
    with pytest.raises(CloudUnavailableError, match="still failing after 1s") as e:
        q.pull(topic, 30)
    assert e.value.exit_code == ExitCode.UNAVAILABLE
    q.close()


def test_worker_on_a_missing_subscription_exits_4_in_one_line(emulator_host: str) -> None:
    sub = f"missing-{uuid.uuid4().hex[:8]}"
    w = WorkerProc(f"pubsub://{PROJECT}", sub, idle_timeout=60)
    assert w.wait(60) == ExitCode.PERMANENT_QUEUE_ERROR
    errors = [line for line in w.raw if line.startswith("rslp worker: error:")]
    assert len(errors) == 1, w.raw
    assert f"subscriptions/{sub}" in errors[0] and "roles/pubsub.subscriber" in errors[0]


def test_worker_exits_5_when_the_queue_stays_unreachable_past_its_patience() -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    w = WorkerProc(f"pubsub://{PROJECT}", "unreachable", env={"PUBSUB_EMULATOR_HOST": dead}, cloud_patience=3)
    assert w.wait(60) == ExitCode.UNAVAILABLE
    errors = [line for line in w.raw if line.startswith("rslp worker: error:")]
    assert len(errors) == 1 and "still failing after 3s" in errors[0], w.raw
    assert w.count("cloud_retry") >= 2


def test_worker_survives_an_emulator_restart_while_it_waits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The emulator goes away for several seconds and comes back (state recreated): the worker lives on.

    The worker reaches the emulator through a proxy, so the restarted emulator can get
    its topic back (it keeps no state) before the worker can see it again.
    """
    topic = f"t-{uuid.uuid4().hex[:10]}"
    with running_emulator() as first, TcpProxy(first) as proxy:
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", first)
        PubSubQueue(PROJECT, weather=FAST).setup(topic, topic)
        w = WorkerProc(f"pubsub://{PROJECT}", topic, env={"PUBSUB_EMULATOR_HOST": proxy.address}, idle_timeout=0)
        try:
            w.wait_for("worker_started", timeout=60)
            proxy.close()  # the emulator goes down...
        except BaseException:
            w.kill()
            raise
    try:
        with running_emulator() as second:
            w.wait_for("cloud_retry", timeout=60)
            time.sleep(4)  # ...for several seconds, while the worker keeps retrying
            assert w.proc.poll() is None
            monkeypatch.setenv("PUBSUB_EMULATOR_HOST", second)
            q = PubSubQueue(PROJECT, weather=FAST)
            q.setup(topic, topic)
            with TcpProxy(second, port=proxy.port):  # ...and is back where the worker looks
                task = Task(project="common", workflow="write_file", args=[str(tmp_path / "after"), "ok"])
                publish_tasks(q, topic, [task])
                w.wait_for("done", timeout=120)
                q.close()
                assert (tmp_path / "after").read_text() == "ok"
                assert w.proc.poll() is None
                w.signal(signal.SIGTERM)
                assert w.wait(60) == 0
    finally:
        w.kill()


class LeaseBreaker:
    """Wraps ``modify_ack_deadline``: each ack id's first call (the pull's) works, extensions fail with ``make()``.

    ``times`` extensions fail per ack id (then they work); ``acked`` records acknowledged ack ids.
    """

    def __init__(self, q: PubSubQueue, make: Callable[[], BaseException], times: int) -> None:
        self.real_modify, self.real_ack = q.subscriber.modify_ack_deadline, q.subscriber.acknowledge
        self.make, self.times = make, times
        self.seen: dict[str, int] = {}
        self.acked: list[str] = []
        self.refused = 0

    def modify(self, request: dict[str, Any], **kwargs: Any) -> Any:
        ack_id = request["ack_ids"][0]
        calls = self.seen[ack_id] = self.seen.get(ack_id, 0) + 1
        if calls > 1 and request["ack_deadline_seconds"] > 0 and calls <= self.times + 1:
            self.refused += 1
            raise self.make()
        return self.real_modify(request=request, **kwargs)

    def ack(self, request: dict[str, Any], **kwargs: Any) -> Any:
        self.acked += request["ack_ids"]
        return self.real_ack(request=request, **kwargs)

    def install(self, q: PubSubQueue, monkeypatch: pytest.MonkeyPatch) -> LeaseBreaker:
        monkeypatch.setattr(q.subscriber, "modify_ack_deadline", self.modify)
        monkeypatch.setattr(q.subscriber, "acknowledge", self.ack)
        return self


def test_lease_extension_rides_out_transient_errors(
    pubsub: PubSubQueue, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rslp.log import get
    from rslp.worker.lease import LeaseKeeper

    pubsub.setup(topic, topic)
    pubsub.publish(topic, [Outgoing(b"long task")])
    breaker = LeaseBreaker(pubsub, lambda: api.ServiceUnavailable("injected"), times=2).install(pubsub, monkeypatch)
    (message,) = _pull_one(pubsub, topic, 10)
    with LeaseKeeper(pubsub, message, 10, 100, get("test")) as lease:
        deadline = time.monotonic() + 60
        while lease.extensions < 1 and lease.lost is None and time.monotonic() < deadline:
            time.sleep(0.1)
    assert lease.lost is None
    assert lease.extensions >= 1 and breaker.refused == 2


def test_lost_lease_is_not_acked_and_downstream_publication_stays_idempotent(
    pubsub: PubSubQueue, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A lease that cannot be extended: the task still finishes and is marked, but that delivery is never acked.

    The redelivered copy finds the done marker, republishes the same downstream task
    (same id, so its own done marker makes it harmless) and is acked.
    """
    from rslp.jobroot import JobRoot
    from rslp.worker.loop import Worker
    from rslp.worker.settings import WorkerSettings

    first, then = f"t-{uuid.uuid4().hex[:8]}", f"t-{uuid.uuid4().hex[:8]}"
    pubsub.setup(first, first)
    pubsub.setup(then, then)
    job = JobRoot(tmp_path / "job")
    write_job(tmp_path / "job", "j", {"chain": first, "write": then})
    task = Task(
        project="common",
        workflow="chain",
        args=[str(tmp_path / "a"), then, str(tmp_path / "b"), "chained", "5"],
        job_id="j",
        job_root=str(job.root),
        partition="p00000",
        step="chain",
    )
    breaker = LeaseBreaker(pubsub, lambda: api.InvalidArgument("injected: ack id expired"), times=1000)
    breaker.install(pubsub, monkeypatch)
    pubsub.publish(first, [Outgoing(task.encode())])
    settings = WorkerSettings(
        queue=f"pubsub://{PROJECT}",
        subscription=[first],
        idle_timeout=25,
        lease_seconds=10,
        retry_sleep=0,
        scratch_root=str(tmp_path / "scratch"),
        allow_diagnostics=True,  # the task is a chain diagnostic
    )
    worker = Worker(settings, queue=pubsub)
    events: list[str] = []
    worker.log = EventRecorder(events)
    assert worker.run() == "idle"
    assert [e for e in events if e in ("lease_lost", "lease_lost_not_acked", "skipped_done")] == [
        "lease_lost",
        "lease_lost_not_acked",
        "skipped_done",
    ]
    first_delivery, *redeliveries = list(breaker.seen)
    assert first_delivery not in breaker.acked, "a delivery whose lease was lost must not be acked"
    assert redeliveries and breaker.acked == redeliveries[:1]
    assert job.read(task, "done") is not None
    q = PubSubQueue(PROJECT, pull_timeout=2, weather=FAST)
    downstream = [Task.model_validate_json(m.data) for m in _drain(q, then)]
    q.close()
    assert len(downstream) == 2 and len({t.task_id for t in downstream}) == 1
    assert downstream[0].parent == task.task_id


class EventRecorder:
    """Stands in for the worker's logger and keeps the event names it logs."""

    def __init__(self, events: list[str]) -> None:
        self.events = events

    def __getattr__(self, level: str) -> Callable[..., None]:
        return lambda event, *args, **fields: self.events.append(event)


def _pull_one(q: PubSubQueue, subscription: str, lease: float) -> list[Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if got := q.pull(subscription, lease):
            return got
    raise AssertionError(f"nothing to pull from {subscription}")


def _drain(q: PubSubQueue, subscription: str) -> list[Any]:
    out: list[Any] = []
    while got := q.pull(subscription, 30, max_messages=10):
        for m in got:
            q.ack(m)
        out += got
    return out


def test_sigterm_while_riding_out_an_outage_exits_0_at_once() -> None:
    """Preemption does not wait out the retry window: the worker leaves within Beaker's grace period."""
    dead = f"127.0.0.1:{free_port()}"
    w = WorkerProc(f"pubsub://{PROJECT}", "unreachable", env={"PUBSUB_EMULATOR_HOST": dead}, cloud_patience=300)
    w.wait_for("cloud_retry", timeout=60)
    signalled = time.monotonic()
    w.signal(signal.SIGTERM)
    assert w.wait(60) == 0
    assert time.monotonic() - signalled < 15
