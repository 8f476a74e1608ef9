"""Preemption: turn SIGTERM / SIGINT into a flag the worker loop checks.

Beaker preempts low-priority jobs with SIGTERM and a short grace period. The handler
only sets an event; the loop then stops pulling, the runner stops the in-flight task
(or lets it finish if it can within the configured grace), the task is handed back
and the worker exits 0. Nothing is done inside the signal handler itself.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any


class Shutdown:
    """Set once a stop signal arrives; ``signal_name`` says which."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Handle SIGTERM and SIGINT (main thread only)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        """Put back the handlers that were there before :meth:`install`."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signal_name = signal.Signals(signum).name
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, waking early on shutdown; True if shutting down."""
        return self.event.wait(timeout)
