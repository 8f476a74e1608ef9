"""What write-jobs checks before it writes anything, so that a failure changes nothing.

write-jobs is all-or-nothing from the user's side: a bad config, a request that does
not parse, a job root that cannot be written, or a queue that cannot be opened fails
here, in one line naming the thing, before the manifest is written or a queue is
created. (Planning the partitions can still refuse a request after this, but that
happens before the manifest is written too.)

This module only looks: it never creates a file, a folder, a topic or a queue.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from upath import UPath

from rslp.errors import PermanentError, QueueResourceError
from rslp.pipeline.config import PipelineConfig
from rslp.pipeline.partition import load_request
from rslp.storage import is_local

#: How long the Pub/Sub probe waits; a reachable service answers in well under a second.
PUBSUB_PROBE_TIMEOUT = 15.0


def preflight(pipeline: PipelineConfig, request: str, job_root: str, queue_url: str) -> None:
    """Raise, in one line, for the first thing that would stop write-jobs halfway."""
    pipeline.check()
    load_request(request)
    if is_local(job_root):
        check_writable(Path(UPath(job_root).path), f"job root {job_root}")
    check_queue(queue_url, sorted(set(pipeline.topics.values())))


def check_queue(url: str, topics: list[str]) -> None:
    """The queue at ``url`` can be opened (or created, for the embedded queue) and published to."""
    if url.startswith("pubsub://"):
        _probe_pubsub(url.removeprefix("pubsub://"), topics[0])
    else:
        from rslp.queue import is_embedded, open_queue

        if not is_embedded(url):
            open_queue(url)  # not a queue URL: the one line naming the accepted forms
        path = UPath(url.removeprefix("local://"))
        if not is_local(path):
            raise PermanentError(f"queue {url}: the embedded queue needs a local file")
        if Path(path.path).is_dir():
            raise PermanentError(f"queue {url}: {path.path} is a directory, not a queue file")
        check_writable(Path(path.path).parent, f"queue {url}")


def check_writable(path: Path, what: str) -> None:
    """``path`` is a folder that can be written, or can be created inside one that can.

    Probes the nearest existing folder with a temporary file (removed at once), which
    also holds for root, for read-only mounts and for places like /proc.
    """
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise PermanentError(f"{what}: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise PermanentError(f"{what}: cannot write in {existing} ({os.strerror(e.errno or 0)})") from None


def _probe_pubsub(project: str, topic: str) -> None:
    """Pub/Sub answers for ``project`` and lets us see its topics; a missing topic is fine (write-jobs creates it)."""
    from google.api_core.exceptions import GoogleAPICallError, NotFound, PermissionDenied

    from rslp.queue.pubsub import PubSubQueue

    queue = PubSubQueue(project)
    try:
        queue.publisher.get_topic(request={"topic": queue.topic_path(topic)}, timeout=PUBSUB_PROBE_TIMEOUT, retry=None)
    except NotFound:
        pass
    except PermissionDenied as e:
        raise QueueResourceError(
            f"queue pubsub://{project}: permission denied ({e.message}); write-jobs creates topics and "
            "subscriptions, so the account needs roles/pubsub.editor (or run `rslp setup` as one that has it)"
        ) from None
    except GoogleAPICallError as e:
        emulator = os.environ.get("PUBSUB_EMULATOR_HOST")
        where = f"the emulator at {emulator}" if emulator else "Google Cloud Pub/Sub"
        raise QueueResourceError(
            f"queue pubsub://{project}: {where} did not answer ({e.__class__.__name__}: {e.message})"
        ) from None
    finally:
        queue.close()
