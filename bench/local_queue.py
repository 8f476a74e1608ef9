"""Embedded queue at job scale: pull+ack cost with 1k and with 60k messages waiting.

A 97k-partition job puts about 100k tasks on the embedded queue at once, so a pull
must not cost in proportion to the backlog. Each sample is one ``pull(1)`` plus its
``ack`` on a real :class:`~rslp.queue.local.LocalQueue` file holding ``waiting``
messages (refilled so the backlog stays put), timed in this process. Some messages
have been delivered before, as in a job with retries, so the dead-letter check has
work to skip. Goal: the median with 60k waiting within 3x of the median with 1k.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from bench.harness import print_result, scratch_dir
from rslp.queue import Outgoing
from rslp.queue.local import LocalQueue

SMALL, LARGE = 1_000, 60_000
SAMPLES = 300
GOAL_RATIO = 3.0


def pull_ack_ms(path: Path, waiting: int, samples: int) -> float:
    """Median milliseconds of one pull+ack with ``waiting`` messages on the subscription."""
    q = LocalQueue(path)
    q.setup("bench-queue", "bench-queue", max_deliveries=5)
    for start in range(0, waiting, 5_000):
        q.publish("bench-queue", [Outgoing(b'{"n": %d}' % i) for i in range(start, min(waiting, start + 5_000))])
    for m in q.pull("bench-queue", 60, max_messages=min(100, waiting)):
        q.nack(m)  # delivered once already: the dead-letter check must look past them
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        (m,) = q.pull("bench-queue", 60)
        q.ack(m)
        times.append(time.perf_counter() - started)
        q.publish("bench-queue", [Outgoing(b"{}")])  # keep the backlog where it was
    q.close()
    return statistics.median(times) * 1000


def measure(small: int = SMALL, large: int = LARGE, samples: int = SAMPLES) -> dict[str, Any]:
    """Both medians, their ratio and whether it meets the goal."""
    with scratch_dir("local-queue") as scratch:
        small_ms = pull_ack_ms(scratch / "small.db", small, samples)
        large_ms = pull_ack_ms(scratch / "large.db", large, samples)
    ratio = large_ms / small_ms
    return {
        "summary": f"pull+ack median {small_ms:.3f} ms at {small:,} waiting, {large_ms:.3f} ms at {large:,}"
        f" ({ratio:.1f}x)",
        "goal": f"median at {large:,} waiting within {GOAL_RATIO:g}x of {small:,}",
        "goal_met": ratio <= GOAL_RATIO,
        "samples": samples,
        f"pull_ack_median_ms_at_{small}": round(small_ms, 3),
        f"pull_ack_median_ms_at_{large}": round(large_ms, 3),
        "ratio": round(ratio, 2),
    }


def run() -> dict[str, Any]:
    return measure()


if __name__ == "__main__":
    print_result("local_queue", run())
