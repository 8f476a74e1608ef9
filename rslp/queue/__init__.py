"""One queue interface, two backends; :func:`open_queue` picks one from a URL.

- ``pubsub://PROJECT_ID``: Google Cloud Pub/Sub (the emulator when
  ``PUBSUB_EMULATOR_HOST`` is set).
- ``local://PATH`` (or a bare path ending in ``.db``): the embedded SQLite queue.

Anything else (``sqlite:///x.db``, ``gs://b/q.db``) is one line naming these forms.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rslp.queue.base import LeaseLostError, Outgoing, Queue, QueueCounts, Received, dead_letter_name

if TYPE_CHECKING:
    from rslp.weather import Weather


def is_embedded(url: str) -> bool:
    """Whether ``url`` names an embedded queue: ``local://PATH`` or a bare path ending in ``.db``."""
    return url.startswith("local://") or (url.endswith(".db") and "://" not in url)


def open_queue(url: str, weather: Weather | None = None, create: bool = False, readonly: bool = False) -> Queue:
    """Open the queue named by ``url``; raises ValueError naming the accepted forms.

    ``weather``: how long a cloud backend rides out transient errors (default 300 s).
    ``create``: make a missing embedded queue file. Only write-jobs, setup and run
    create queues; anything else that meets a typo'd path says "no such queue".
    ``readonly``: for commands that only look (status, dlq list and show): an embedded
    queue's file is opened with SQLite's ``mode=ro``, so whatever file a job's manifest
    names is never given tables or switched to WAL.
    """
    if url.startswith("pubsub://") and len(url) > len("pubsub://"):
        from rslp.queue.pubsub import PubSubQueue

        return PubSubQueue(url.removeprefix("pubsub://"), weather=weather)
    if is_embedded(url):
        from rslp.queue.local import LocalQueue

        return LocalQueue(url.removeprefix("local://"), create=create, readonly=readonly)
    raise ValueError(f"queue {url!r} is not pubsub://PROJECT_ID or local://PATH/queue.db")


__all__ = [
    "LeaseLostError",
    "Outgoing",
    "Queue",
    "QueueCounts",
    "Received",
    "dead_letter_name",
    "is_embedded",
    "open_queue",
]
