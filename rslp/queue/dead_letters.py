"""Dead letters on any subscription, including a plain one made by ``gcloud`` (invariant 9).

The ancestor's README makes the topic and subscription with plain ``gcloud pubsub
topics create`` / ``subscriptions create``: no dead-letter topic, no policy. So when a
worker starts it gives each subscription it pulls what ``rslp setup`` would have: the
dead-letter topic ``S-dead-letter``, a subscription on it that keeps dead letters for
``rslp dlq``, and a dead-letter policy on ``S`` (Pub/Sub then moves a message whose
worker keeps dying). Only what is missing is created, so this is cheap and idempotent
and many workers may do it at once.

A worker with least privilege (``roles/pubsub.subscriber`` on its subscription only)
may not create these; it says so in one line at start and goes on. Where moving a
message to the dead-letter topic then fails, the message is *held*: handed back for
:data:`HOLD_SECONDS` and logged with its reason, so it never blocks other messages,
never counts as a task failure, and is not lost; ``rslp setup --subscription S``
(by someone who may) gives ``S`` its dead letters, and held messages land there.

This module decides what happens; the queue backends do the calls. It never raises.
"""

from __future__ import annotations

import contextlib
from typing import Any

from rslp.errors import typed
from rslp.queue.base import (
    DEAD_LETTER_ATTEMPTS,
    DEAD_LETTER_KIND,
    DEAD_LETTER_TRACEBACK,
    DEAD_LETTER_WORKER,
    MAX_DELIVERIES,
    Queue,
    Received,
    dead_letter_name,
)

#: How long a message that could not be dead-lettered is handed back for (Pub/Sub's maximum).
HOLD_SECONDS = 600.0

#: At most this much of a failure's traceback rides along (the end, where the error is).
TRACEBACK_LIMIT = 1000


def attributes(kind: str, attempts: int, worker: str, traceback: str = "") -> dict[str, str]:
    """The attributes a dead letter carries: what failed it, after how many runs, on which worker, and where."""
    out = {DEAD_LETTER_KIND: kind, DEAD_LETTER_ATTEMPTS: str(attempts), DEAD_LETTER_WORKER: worker}
    if traceback:
        out[DEAD_LETTER_TRACEBACK] = traceback[-TRACEBACK_LIMIT:]
    return out


def fix_hint(queue_url: str, subscription: str) -> str:
    """The command that gives ``subscription`` its dead letters."""
    return f"rslp setup --queue {queue_url} --subscription {subscription}"


def prepare(
    queue: Queue, queue_url: str, subscription: str, max_deliveries: int = MAX_DELIVERIES
) -> tuple[str, dict[str, Any]]:
    """Make sure ``subscription`` has dead letters; return one log event (name, fields) saying how it stands."""
    try:
        created = queue.attach_dead_letters(subscription, max_deliveries=max_deliveries)
    except Exception as e:  # noqa: BLE001 - a worker without admin rights still works; it says how
        return "dead_letters_unavailable", {
            "subscription": subscription,
            "error": typed(e),
            "instead": (
                f"bad messages go to topic {dead_letter_name(subscription)} if it exists, else they are held on "
                f"{subscription} ({HOLD_SECONDS:.0f} s at a time) and logged with their reason; "
                f"to fix: {fix_hint(queue_url, subscription)}"
            ),
        }
    if created:
        return "dead_letters_attached", {"subscription": subscription, "created": created}
    return "dead_letters_ready", {"subscription": subscription, "dead_letter_topic": dead_letter_name(subscription)}


def move(queue: Queue, message: Received, reason: str, attributes: dict[str, str]) -> str | None:
    """Move ``message`` to its dead-letter topic; if that fails, hold it and return why (one line)."""
    try:
        queue.dead_letter(message, reason, attributes)
        return None
    except Exception as e:  # noqa: BLE001 - infrastructure, not the task's fault: never a task failure
        with contextlib.suppress(Exception):
            queue.nack(message, delay=HOLD_SECONDS)
        return typed(e)
