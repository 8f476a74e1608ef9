"""How the worker publishes tasks: confirmed, retried through a cloud's bad minutes, refusals told apart.

Everything the worker publishes goes through :class:`Publisher`: a task's downstream
tasks, a retry, a task handed back on preemption. Each publish waits for the queue's
confirmation, retrying transient failures for a patience window (:mod:`rslp.weather`),
because the worker acks a message only once what it publishes is durable. A permanent
refusal fails at once; for downstream tasks, whose topics come from a job's files or a
message, it is the message's fault (:class:`DownstreamRefusedError`), never a reason to
stop the worker.
"""

from __future__ import annotations

from rslp.errors import QueueResourceError
from rslp.queue import Queue
from rslp.queue.base import encode_task
from rslp.task import Downstream, Task
from rslp.text import clip
from rslp.weather import PUBLISHER, Weather


class DownstreamRefusedError(Exception):
    """A downstream topic that a job's files or a message chose is missing or forbidden; dead-letter the message."""


class Publisher:
    """Publishes tasks to ``queue``, retrying a failing publish for ``patience`` seconds by default."""

    def __init__(self, queue: Queue, patience: float) -> None:
        self.queue = queue
        self.patience = patience

    def publish(self, topic: str, tasks: list[Task], patience: float | None = None) -> None:
        """Publish and wait for confirmation, retrying transient failures for ``patience`` seconds.

        A permanent error (a missing topic, a missing role) fails at once: waiting
        cannot fix it.
        """
        weather = Weather(patience=patience or self.patience)
        messages = [encode_task(t) for t in tasks]
        weather.call(
            lambda: self.queue.publish(topic, messages), what="publish to topic", resource=topic, role=PUBLISHER
        )

    def downstream(self, task: Task, downstream: list[Downstream]) -> None:
        """Publish what ``task`` asked for (or its done marker recorded), one batch per topic."""
        by_topic: dict[str, list[Task]] = {}
        for d in downstream:
            by_topic.setdefault(d.topic, []).append(d.task)
        for topic, tasks in by_topic.items():
            try:
                self.publish(topic, tasks)
            except QueueResourceError as e:  # Pub/Sub's refusal (CloudRefusedError) or the embedded queue's
                raise DownstreamRefusedError(clip(f"cannot publish task {task.task_id}'s downstream: {e}")) from None
