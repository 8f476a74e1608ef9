"""Enqueue: publish 100,000 task messages to the emulator with ``write_jobs``.

Three ways of publishing the same payloads, each to its own fresh topic (with a
subscription, so the emulator keeps the messages as it would in production):

- ``write_jobs``: the public API (``rslp.common.worker.write_jobs``), batched and
  confirmed; its time includes building and encoding the task envelopes.
- ``raw batched``: the ceiling, a google-cloud-pubsub PublisherClient with
  BatchSettings(max_messages=1000, max_bytes=5 MiB, max_latency=0.05) publishing
  the pre-encoded payloads and waiting on all the futures.
- ``baseline``: what the ancestor did, ``publish(...).result()`` per message. At
  55-75 msg/s 100k would take half an hour, so it runs on a sample and its rate is
  extrapolated.

Goals: write_jobs at least 50x the baseline and at least 80% of the raw batched rate.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from bench.harness import PROJECT, emulator, median, print_result
from rslp.common.worker import write_jobs
from rslp.task import Task

MESSAGES = 100_000
BASELINE_SAMPLE = 500
WARM_UP = 20_000


def args_list(n: int) -> list[list[str]]:
    """Distinct, realistic task args (a path per task), so every message is unique."""
    return [[f"/data/job/partition-{i:06d}.txt", "done"] for i in range(n)]


def payloads(n: int) -> list[bytes]:
    """The exact bytes write_jobs publishes for ``args_list(n)``."""
    return [Task(project="common", workflow="write_file", args=args).encode() for args in args_list(n)]


class Topics:
    """Creates fresh topics with a subscription each, and deletes them all at the end."""

    def __init__(self) -> None:
        from google.cloud import pubsub_v1

        self.publisher = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()
        self.made: list[tuple[str, str]] = []

    def new(self, prefix: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        topic = self.publisher.topic_path(PROJECT, name)
        sub = self.subscriber.subscription_path(PROJECT, name)
        self.publisher.create_topic(request={"name": topic})
        self.subscriber.create_subscription(request={"name": sub, "topic": topic})
        self.made.append((topic, sub))
        return name

    def delete_all(self) -> None:
        """Delete what was made: 100k-message backlogs would otherwise pile up in the emulator."""
        for topic, sub in self.made:
            self.subscriber.delete_subscription(request={"subscription": sub})
            self.publisher.delete_topic(request={"topic": topic})
        self.made = []

    def close(self) -> None:
        self.delete_all()
        self.subscriber.close()
        self.publisher.stop()


def write_jobs_rate(topic: str, n: int) -> float:
    start = time.perf_counter()
    ids = write_jobs(PROJECT, topic, "common", "write_file", args_list(n))
    elapsed = time.perf_counter() - start
    if len(ids) != n:
        raise RuntimeError(f"write_jobs confirmed {len(ids)} of {n} messages")
    return n / elapsed


def raw_batched_rate(topic: str, data: list[bytes]) -> float:
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(max_messages=1000, max_bytes=5 * 1024 * 1024, max_latency=0.05)
    )
    path = publisher.topic_path(PROJECT, topic)
    try:
        start = time.perf_counter()
        futures = [publisher.publish(path, d) for d in data]
        for f in futures:
            f.result(timeout=120)
        return len(data) / (time.perf_counter() - start)
    finally:
        publisher.stop()


def baseline_rate(topic: str, data: list[bytes]) -> float:
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    path = publisher.topic_path(PROJECT, topic)
    try:
        start = time.perf_counter()
        for d in data:
            publisher.publish(path, d).result(timeout=60)
        return len(data) / (time.perf_counter() - start)
    finally:
        publisher.stop()


def run(repeats: int = 3, messages: int = MESSAGES, sample: int = BASELINE_SAMPLE) -> dict[str, Any]:
    """Median rates over ``repeats`` rounds, each running all three in turn after one warm-up.

    The ratios are taken within each round (the same emulator, the same moment) and
    their median reported. The warm-up publish lets the emulator's JIT settle first.
    """
    data = payloads(messages)
    rates: dict[str, list[float]] = {"write_jobs": [], "raw_batched": [], "baseline": []}
    with emulator():
        topics = Topics()
        try:
            raw_batched_rate(topics.new("warm"), data[:WARM_UP])
            for _ in range(repeats):
                rates["write_jobs"].append(write_jobs_rate(topics.new("wj"), messages))
                rates["raw_batched"].append(raw_batched_rate(topics.new("raw"), data))
                rates["baseline"].append(baseline_rate(topics.new("base"), data[:sample]))
                topics.delete_all()
        finally:
            topics.close()
    write, raw, base = (median(rates[k]) for k in ("write_jobs", "raw_batched", "baseline"))
    vs_base = median([w / b for w, b in zip(rates["write_jobs"], rates["baseline"], strict=True)])
    vs_raw = median([w / r for w, r in zip(rates["write_jobs"], rates["raw_batched"], strict=True)])
    return {
        "messages": messages,
        "baseline_sample": sample,
        "repeats": repeats,
        "write_jobs_msgs_per_s": round(write),
        "raw_batched_msgs_per_s": round(raw),
        "baseline_msgs_per_s": round(base, 1),
        "write_jobs_seconds_for_100k": round(messages / write, 2),
        "baseline_seconds_for_100k_extrapolated": round(messages / base),
        "write_jobs_vs_baseline": round(vs_base, 1),
        "write_jobs_vs_raw": round(vs_raw, 3),
        "all_runs_msgs_per_s": {k: [round(v) for v in vs] for k, vs in rates.items()},
        "summary": (
            f"write_jobs {write:,.0f} msg/s = {vs_base:.0f}x the one-at-a-time baseline ({base:.0f} msg/s on "
            f"{sample}, extrapolated) and {vs_raw:.0%} of the raw batched client ({raw:,.0f} msg/s)"
        ),
        "goal": "write_jobs >= 50x baseline and >= 80% of raw batched",
        "goal_met": vs_base >= 50 and vs_raw >= 0.8,
    }


def profile(messages: int = 20_000) -> str:
    """A pyinstrument profile of write_jobs publishing ``messages`` (shown when the goal is missed)."""
    from pyinstrument import Profiler

    with emulator():
        topics = Topics()
        try:
            topic = topics.new("profile")
            profiler = Profiler()
            with profiler:
                write_jobs(PROJECT, topic, "common", "write_file", args_list(messages))
        finally:
            topics.close()
    return str(profiler.output_text(unicode=False, color=False))


if __name__ == "__main__":
    print_result("enqueue", run())
