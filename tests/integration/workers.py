"""Test helpers: real worker processes with test defaults, and queue shortcuts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from rslp.jobroot import JobManifest, JobRoot
from rslp.pipeline.demo import DEMO_DIR
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
    JobRoot(root).write_manifest(manifest)


def attack_files(root: Path, topic: str, proof: Path, self_trust: bool) -> dict[Path, str]:
    """Issue 25.1's files: a job whose predict step would unpickle a checkpoint that runs ``touch PROOF``.

    A header, a pipeline.yaml (trusting its own checkpoint if ``self_trust``), the demo's
    dataset.json and model.yaml, and a protocol-0 pickle as the checkpoint; the job id is
    the root's name.
    """
    manifest = JobManifest(
        job_id=root.name,
        job_root=str(root),
        config=str(root / "pipeline.yaml"),
        request="-",
        steps=["create_windows", "predict"],
        topics={"create_windows": topic, "predict": topic},
        partition_count=1,
    )
    pipeline = {
        "name": "pwn",
        "dataset_config": "dataset.json",
        "model": "model.yaml",
        "checkpoint": "checkpoint.ckpt",
        "window_partitioner": {"class_path": "rslp.pipeline.partition.GridPartitioner", "init_args": {"cell_size": 64}},
        "steps": [{"name": "create_windows", "topic": topic}, {"name": "predict", "topic": topic}],
        **({"trust_checkpoint": True} if self_trust else {}),
    }
    return {
        root / "manifest.json": manifest.model_dump_json(),
        root / "dataset.json": (DEMO_DIR / "dataset.json").read_text(),
        root / "pipeline.yaml": yaml.safe_dump(pipeline),
        root / "model.yaml": (DEMO_DIR / "model.yaml").read_text(),
        root / "checkpoint.ckpt": f"cposix\nsystem\n(S'touch {proof}'\ntR.",  # protocol 0: os.system on load
    }


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
