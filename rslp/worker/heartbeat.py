"""Keeps a running task's marker fresh, so ``rslp status`` can tell running from stalled.

A worker killed without a word (SIGKILL, OOM, a lost node) leaves its task's
``running`` marker behind; until another worker takes the message, status would show
the task as running forever. While the lease is held, this daemon thread rewrites the
marker every half lease with the time of the beat; the marker's modification time is
then the last sign of life, which status reads from its one listing per step (no
extra read per task). A marker older than two leases (``lease_seconds`` is recorded in
it) is ``stalled``. One small write per worker every half lease is far below any
storage rate limit, and each task writes only its own object.

The beat stops when the lease is lost: a worker that no longer holds the task must
not make it look alive.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from rslp.errors import typed
from rslp.jobroot import JobRoot
from rslp.task import Task


class MarkerHeartbeat:
    """Rewrites ``task``'s running marker every ``lease_seconds / 2`` while ``alive()``."""

    def __init__(
        self,
        ledger: JobRoot,
        task: Task,
        worker_id: str,
        lease_seconds: float,
        alive: Callable[[], bool],
        log: Any,
    ) -> None:
        self.ledger = ledger
        self.task = task
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.alive = alive
        self.log = log
        self.beats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rslp-heartbeat", daemon=True)

    def beat(self) -> None:
        """Write the running marker now."""
        self.ledger.mark(
            self.task, "running", worker=self.worker_id, lease_seconds=self.lease_seconds, heartbeat=time.time()
        )
        self.beats += 1

    def __enter__(self) -> MarkerHeartbeat:
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.lease_seconds / 2):
            if not self.alive():
                return
            try:
                self.beat()
            except Exception as e:  # noqa: BLE001 - a missed beat only makes status cautious; the task goes on
                self.log.warning("heartbeat_failed", error=typed(e))
