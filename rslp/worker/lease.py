"""Keeps a message's lease alive while its task runs.

A daemon thread in the worker's main process re-extends the lease every third of the
lease length. The lease is short (:data:`DEFAULT_LEASE_SECONDS`): it is the time a
task whose worker died outright (SIGKILL, OOM, a lost node) stays invisible before
another worker can run it, and the heartbeat, not the lease length, is what keeps a
long task's message from being redelivered. The task runs in a child process (see runner.py), so no task code, not
even one holding the GIL, can starve this thread. Extension stops at ``max_lease``
(the worker also stops the task then, so a task never outlives its lease silently).
A transient failure of an extension (the queue's bad minute) is retried with jittered
backoff for as long as the lease still holds. Only when that runs out, or the queue
says the lease is gone, is it recorded in :attr:`LeaseKeeper.lost` rather than raised:
the task goes on, and its outputs and done marker make a duplicate run harmless, but
the worker must not ack a message it no longer holds (another worker may have it).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from rslp.errors import typed
from rslp.queue import Queue, Received
from rslp.weather import Weather

#: Stop retrying an extension this long before the lease would run out.
MARGIN_SECONDS = 1.0

#: Failover time after a crash: a dead worker's task is visible again at most this long
#: after its last lease extension. Pub/Sub's minimum ack deadline is 10 s; 12 s with a
#: heartbeat every 4 s leaves two extensions' slack for a slow lease call, and one lease
#: call per 4 s per worker is far below Pub/Sub's quotas.
DEFAULT_LEASE_SECONDS = 12.0


class LeaseKeeper:
    """Extends ``message``'s lease every ``lease_seconds / 3`` until stopped."""

    def __init__(self, queue: Queue, message: Received, lease_seconds: float, max_lease: float, log: Any) -> None:
        self.queue = queue
        self.message = message
        self.lease_seconds = lease_seconds
        self.max_lease = max_lease
        self.log = log
        self.extensions = 0
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rslp-lease", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        start = time.monotonic()
        expires = start + self.lease_seconds
        while not self._stop.wait(self.lease_seconds / 3):
            if time.monotonic() - start >= self.max_lease:
                self.log.warning("lease_max_reached", max_lease=self.max_lease)
                return
            weather = Weather(
                patience=max(0.0, expires - time.monotonic() - MARGIN_SECONDS),
                first_wait=0.2,
                max_wait=self.lease_seconds / 6,
                interrupt=self._stop,  # the task ended: stop retrying at once
            )
            try:
                weather.call(
                    lambda: self.queue.extend(self.message, self.lease_seconds),
                    what="extend lease on message",
                    resource=self.message.message_id,
                )
            except Exception as e:  # noqa: BLE001 - LeaseLostError, or retries ran out: the lease may be gone
                if self._stop.is_set():
                    return
                self.lost = typed(e)
                self.log.warning("lease_lost", error=self.lost)
                return
            expires = time.monotonic() + self.lease_seconds
            self.extensions += 1
            self.log.info("lease_extended", extensions=self.extensions, lease_seconds=self.lease_seconds)
