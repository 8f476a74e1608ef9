"""Retry policy: what a failed attempt of a task turns into.

The failed-attempt count travels in the task envelope (``Task.attempt``), so the
budget is shared by every worker that ever picks the task up, and preemption (which
republishes the task with the same count) never spends it. Pub/Sub's own delivery
counter cannot be used for this: it counts preemptions and early pulls too.

The backoff is computed here rather than with tenacity because it is not a loop in
one process: the worker republishes the task with a ``not_before`` time and moves
on, so the GPU is not held while the task waits.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from rslp.task import Task

#: The longest a message can be handed back for in one go (Pub/Sub's ack-deadline ceiling).
MAX_HOLD = 600.0


@dataclass(frozen=True)
class RetryPolicy:
    """``max_attempts`` runs per task, exponential backoff from ``backoff_base`` seconds."""

    max_attempts: int = 3
    backoff_base: float = 10.0
    backoff_max: float = 600.0

    def should_retry(self, task: Task) -> bool:
        """True if ``task`` (which just failed) has attempts left."""
        return task.attempt + 1 < self.max_attempts

    def backoff(self, task: Task) -> float:
        """Seconds to wait before the next attempt: base * 2^attempt, capped, +-20% jitter."""
        delay = min(self.backoff_max, self.backoff_base * 2**task.attempt)
        return delay * random.uniform(0.8, 1.2)


def hold_for(wait: float) -> float:
    """How long to hand back a task still in backoff for ``wait`` more seconds.

    Whole seconds, rounded up and at least one: Pub/Sub rounds an ack deadline to whole
    seconds, so a wait under half a second became 0, an immediate redelivery, and a
    task in backoff was pulled and handed back dozens of times in a tight loop. Capped
    at Pub/Sub's 600 s ceiling; the retry backoff itself never exceeds it, so a task
    in backoff costs one or two deliveries whatever the subscription's retry policy.
    """
    return float(min(MAX_HOLD, max(1, math.ceil(wait))))
