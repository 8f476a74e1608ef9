"""Pub/Sub's message limits: attribute bytes and count, message size, permanent publish errors."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rslp.common.worker import write_jobs
from rslp.queue import Outgoing, Queue, dead_letter_name
from rslp.queue.base import encode_task
from rslp.queue.limits import MAX_ATTRIBUTES, MAX_DATA_BYTES, MessageTooLargeError, cut_utf8
from rslp.task import Task
from rslp.weather import CloudRefusedError
from rslp.worker.loop import Worker
from rslp.worker.settings import WorkerSettings
from tests.conftest import PROJECT, Backend, pull_until


def test_cut_utf8_counts_bytes_and_never_splits_a_character() -> None:
    assert cut_utf8("abc", 2) == "ab"
    cut = cut_utf8("é" * 600)  # 1200 bytes
    assert len(cut.encode()) == 1024 and cut == "é" * 512
    assert cut_utf8("aé", 2) == "a"


def test_dead_letter_with_a_long_non_ascii_reason_and_99_attributes_is_kept(
    backend: Backend, queue: Queue, topic: str
) -> None:
    queue.setup(topic, topic)
    carried = {f"k{i}": "v" for i in range(MAX_ATTRIBUTES - 1)}
    queue.publish(topic, [Outgoing(b"poison", carried)])
    message = pull_until(queue, topic, backend.min_lease, 30)
    assert message is not None
    reason = "déjà vu: " + "é" * 2000  # 4009 bytes, 2009 characters
    queue.dead_letter(message, reason, {"rslp_kind": "permanent", "rslp_attempts": "1", "rslp_worker": "w"})
    dead = pull_until(queue, dead_letter_name(topic), backend.min_lease, 30)
    assert dead is not None and dead.data == b"poison"
    assert len(dead.attributes) <= MAX_ATTRIBUTES
    assert dead.attributes["rslp_dead_letter_reason"].startswith("déjà vu: éé")
    assert len(dead.attributes["rslp_dead_letter_reason"].encode()) <= 1024
    assert dead.attributes["rslp_kind"] == "permanent" and dead.attributes["rslp_dead_letter_source"] == topic


def test_a_task_over_10mb_is_refused_before_publishing_naming_it(emulator_host: str, topic: str) -> None:
    big = Task(project="common", workflow="write_file", args=["/tmp/x", "x" * (MAX_DATA_BYTES + 1)])
    with pytest.raises(MessageTooLargeError, match=rf"task {big.task_id} .* over Pub/Sub's 10,000,000-byte"):
        encode_task(big)
    with pytest.raises(MessageTooLargeError):
        write_jobs(PROJECT, topic, "common", "write_file", [["/tmp/x", "x" * (MAX_DATA_BYTES + 1)]])


def test_worker_publish_to_a_missing_topic_fails_at_once_not_after_its_patience(
    emulator_host: str, tmp_path: Path
) -> None:
    settings = WorkerSettings(queue=f"pubsub://{PROJECT}", subscription=["unused"], publish_patience=600)
    worker = Worker(settings)
    start = time.monotonic()
    with pytest.raises(CloudRefusedError, match=r"roles/pubsub\.publisher"):
        worker.publisher.publish("no-such-topic-anywhere", [Task(project="common", workflow="noop")])
    assert time.monotonic() - start < 10
    worker.queue.close()
