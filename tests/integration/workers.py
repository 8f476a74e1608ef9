"""Test helpers: real worker processes with test defaults, and queue shortcuts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rslp.ledger import JobManifest, Ledger
from rslp.queue import Outgoing, Queue, dead_letter_name
from rslp.task import Task
from rslp.testing import workers


class WorkerProc(workers.WorkerProc):
    """A real worker with test defaults: a long idle timeout, no retry backoff, scratch under /tmp.

    The tests send the diagnostics (``write_file``, ``fail``, ``sleep``...) as messages, so
    their workers allow them (``--allow_diagnostics``); a test of the refusal passes False.
    """

    def __init__(self, queue_url: str, subscription: str, **flags: Any) -> None:
        defaults = {
            "idle_timeout": 30,
            "retry_sleep": 0,
            "scratch_root": "/tmp/rslp-test-scratch",
            "allow_diagnostics": True,
        }
        super().__init__(queue_url, subscription, **{**defaults, **flags})


def write_job(root: Path, job_id: str, topics: dict[str, str], partition_count: int = 1) -> None:
    """A minimal job root: a manifest of ``job_id``, its steps (-> topics) and partitions p00000...

    Workers check job tasks on it (a task's partition must be one of the job's).
    """
    manifest = JobManifest(
        job_id=job_id,
        job_root=str(root),
        config="-",
        request="-",
        steps=list(topics),
        topics=topics,
        partition_count=partition_count,
    )
    Ledger(root).write_manifest(manifest)


def publish_tasks(q: Queue, topic: str, tasks: list[Task]) -> None:
    q.publish(topic, [Outgoing(t.encode()) for t in tasks])


def drain(q: Queue, subscription: str, lease: float, timeout: float = 5) -> list[Any]:
    """Everything currently on ``subscription`` (acked, so removed)."""
    out = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = q.pull(subscription, lease, max_messages=50)
        if not got:
            if out:
                break
            time.sleep(0.2)
            continue
        for m in got:
            out.append(m)
            q.ack(m)
    return out


def dead_letters(
    q: Queue, subscription: str, lease: float, expect: int, timeout: float = 30, batch: int = 50
) -> list[Any]:
    """Collect at least ``expect`` dead letters of ``subscription`` (or fail after ``timeout``), ``batch`` a pull."""
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < expect and time.monotonic() < deadline:
        for m in q.pull(dead_letter_name(subscription), lease, max_messages=batch):
            got.append(m)
            q.ack(m)
        time.sleep(0.1)
    return got
