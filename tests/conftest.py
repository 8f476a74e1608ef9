"""Shared fixtures: the Pub/Sub emulator and a fresh queue per test on either backend."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rslp.queue import Outgoing, Queue, Received
from rslp.queue.local import LocalQueue
from rslp.queue.pubsub import PubSubQueue
from rslp.testing.emulator import EmulatorUnavailable, running_emulator
from rslp.testing.gcs_emulator import BUCKET, running_gcs_emulator

os.environ.setdefault("WANDB_MODE", "disabled")
# Default embedded queues (on local disk, under ~/.cache) go to a scratch folder of this test process
# (`make test` runs several: pytest-xdist's workers, each importing this module).
os.environ["RSLP_QUEUE_DIR"] = tempfile.mkdtemp(prefix="rslp-test-queues-")
PROJECT = "rslp-test"


#: Test modules whose tests share a whole demo run (a module-scoped fixture, or the run-wide
#: ``demo_job`` of tests/e2e/conftest.py). `make test` runs the suite in pytest-xdist processes: each
#: of these goes whole to one of them, so its fixture is built once and no more than one process
#: waits for it; every other test goes to whichever process is free, so the slow ones spread out.
SHARED_FIXTURE_MODULES = frozenset(
    {
        "tests/e2e/test_demo_pipeline.py",
        "tests/e2e/test_demo_on_object_storage.py",
        "tests/unit/test_pipeline_steps.py",
    }
)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist's scope scheduling, with a scope per test except in :data:`SHARED_FIXTURE_MODULES`.

    (Its ``--dist loadgroup`` would do this with marks, but pytest-xdist 3.8 cannot
    rename test ids on pytest 9.2, so its groups are silently ignored.)
    """
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::")[0]
            return module if module in SHARED_FIXTURE_MODULES else nodeid

    return SharedFixtureScheduling(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Say so when a module with a module-scoped fixture is missing from :data:`SHARED_FIXTURE_MODULES`."""
    missing = set()
    for item in items:
        fixtures = getattr(item, "_fixtureinfo", None)  # pytest's own record of the fixtures a test uses
        scopes = {defs[-1].scope for defs in fixtures.name2fixturedefs.values() if defs} if fixtures else set()
        module = item.nodeid.split("::")[0]
        if "module" in scopes and module not in SHARED_FIXTURE_MODULES:
            missing.add(module)
    for module in sorted(missing):
        warnings.warn(
            f"{module} has a module-scoped fixture: add it to SHARED_FIXTURE_MODULES in tests/conftest.py,"
            " or parallel runs build it once per test process",
            stacklevel=1,
        )


@pytest.fixture(scope="session")
def emulator_host() -> Iterator[str]:
    """A Pub/Sub emulator for the whole session; PUBSUB_EMULATOR_HOST points at it."""
    try:
        with running_emulator() as host:
            old = os.environ.get("PUBSUB_EMULATOR_HOST")
            os.environ["PUBSUB_EMULATOR_HOST"] = host
            yield host
            if old is None:
                os.environ.pop("PUBSUB_EMULATOR_HOST", None)
            else:
                os.environ["PUBSUB_EMULATOR_HOST"] = old
    except EmulatorUnavailable as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the Pub/Sub tests, but: {e}")
        pytest.skip(f"Pub/Sub emulator unavailable: {e}")


@pytest.fixture(scope="session")
def gcs_bucket() -> Iterator[str]:
    """``gs://BUCKET`` on a GCS emulator for the whole session (STORAGE_EMULATOR_HOST points at it)."""
    with running_gcs_emulator(BUCKET):
        yield f"gs://{BUCKET}"


@dataclass
class Backend:
    """One queue backend under test: its URL and the shortest lease it honours."""

    name: str
    url: str
    min_lease: float

    def open(self) -> Queue:
        if self.url.startswith("pubsub://"):
            return PubSubQueue(self.url.removeprefix("pubsub://"), pull_timeout=2)
        return LocalQueue(self.url.removeprefix("local://"))


@pytest.fixture(params=["local", "pubsub"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each test using this runs once on the embedded queue and once on the emulator."""
    if request.param == "pubsub":
        request.getfixturevalue("emulator_host")
        return Backend("pubsub", f"pubsub://{PROJECT}", min_lease=10)
    return Backend("local", f"local://{tmp_path / 'queue.db'}", min_lease=2)


@pytest.fixture
def topic() -> str:
    """A fresh topic (and subscription) name, so tests never see each other's messages."""
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def queue(backend: Backend) -> Iterator[Queue]:
    q = backend.open()
    yield q
    q.close()


def pull_until(
    q: Queue, subscription: str, lease: float, timeout: float, want: Callable[[Received], bool] = lambda m: True
) -> Received | None:
    """Pull repeatedly until a wanted message arrives or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in q.pull(subscription, lease):
            if want(m):
                return m
            q.nack(m)
        time.sleep(0.05)
    return None


#: Generous ceiling for a message to arrive on a loaded machine; absence checks end early on their canary.
ARRIVAL_CEILING = 60.0


def pull_until_canary(q: Queue, subscription: str, lease: float, timeout: float = ARRIVAL_CEILING) -> list[Received]:
    """Everything pulled from ``subscription`` before a canary published now comes back (all acked).

    An absence check that waits a second and sees nothing passes however slow or broken
    the code is. Seeing our own canary proves the subscription is read and delivering,
    so what was published before it had its chance to show up. The topic and the
    subscription share a name in these tests (``setup(topic, topic)``; dead letters too).
    """
    canary = f"canary-{uuid.uuid4().hex}".encode()
    q.publish(subscription, [Outgoing(canary)])
    seen: list[Received] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in q.pull(subscription, lease, max_messages=50):
            q.ack(m)
            if m.data == canary:
                return seen
            seen.append(m)
        time.sleep(0.05)
    raise AssertionError(f"the canary published to {subscription} did not arrive within {timeout:.0f} s")


def wait_until(predicate: Callable[[], object], timeout: float, what: str, every: float = 0.2) -> float:
    """Poll ``predicate`` until true; returns the seconds it took (fails naming ``what`` after ``timeout``)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout}s")


def stop_when_finished(job_roots: list[str], workers: list[subprocess.Popen[Any]], timeout: float) -> None:
    """Once every job has nothing left to run, stop its workers as a fleet stop does (SIGTERM); each must exit 0.

    A worker left to exit by itself waits out its whole idle timeout after the last
    task, and that timeout must be long enough to cover any gap in a job's work.
    """
    from upath import UPath

    from rslp.status.model import collect

    def finished() -> bool:
        for root in job_roots:
            UPath(root).fs.invalidate_cache()  # fsspec keeps a gs:// listing, and this process lists again and again
            if not collect(root).finished:
                return False
        return True

    try:
        # Once a second: a status read opens the queue and lists every step.
        wait_until(finished, timeout, f"{job_roots} finished", every=1.0)
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(timeout=60) for proc in workers]
    assert codes == [0] * len(workers), codes
