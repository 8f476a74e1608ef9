"""Real worker processes for tests and benchmarks, watched through their JSON log events.

A :class:`WorkerProc` runs ``python -m rslp.cli worker`` exactly as a user or a fleet
would, and a reader thread collects the structured events it logs to stderr
(``worker_started``, ``received``, ``started``, ``done``, ``idle_exit``...), so a
test can wait for a state change and a benchmark can time one from the events'
timestamps. Used by tests/integration and bench/; never by the fleet itself.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from rslp.worker.settings import worker_command


def epoch(event: dict[str, Any]) -> float:
    """An event's ISO timestamp as seconds since the epoch."""
    return datetime.fromisoformat(event["timestamp"]).timestamp()


class WorkerProc:
    """One worker subprocess; ``flags`` are more of its settings (:class:`~rslp.worker.settings.WorkerSettings`)."""

    def __init__(
        self,
        queue_url: str,
        subscription: str,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        new_session: bool = False,
        **flags: Any,
    ) -> None:
        args = worker_command({"queue": queue_url, "subscription": subscription, **flags}, here=True)
        self.events: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self.spawned_at = time.time()
        self.exited_at: float | None = None
        self._new: queue.Queue[dict[str, Any]] = queue.Queue()
        self.proc = subprocess.Popen(
            args,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "WANDB_MODE": "disabled", **(env or {})},
            cwd=cwd,
            start_new_session=new_session,  # its own process group, for kill_group()
        )
        self._threads = [threading.Thread(target=self._read, daemon=True), threading.Thread(target=self._reap)]
        for t in self._threads:
            t.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                self.raw.append(line.rstrip())
                continue
            if isinstance(event, dict) and "event" in event:
                self.events.append(event)
                self._new.put(event)

    def _reap(self) -> None:
        self.proc.wait()
        self.exited_at = time.time()

    def wait_for(self, name: str, timeout: float = 30, **match: Any) -> dict[str, Any]:
        """Block until an event called ``name`` (with ``match`` fields) has been logged; return it."""

        def wanted(e: dict[str, Any]) -> bool:
            return e.get("event") == name and all(e.get(k) == v for k, v in match.items())

        for e in list(self.events):
            if wanted(e):
                return e
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                e = self._new.get(timeout=0.1)
            except queue.Empty:
                continue
            if wanted(e):
                return e
        raise AssertionError(f"no {name!r} event within {timeout}s; last events: {self.events[-8:]}")

    def count(self, name: str) -> int:
        """How many events called ``name`` were logged."""
        return sum(e.get("event") == name for e in self.events)

    def times(self, name: str) -> list[float]:
        """Epoch times of every event called ``name``, in order."""
        return [epoch(e) for e in self.events if e.get("event") == name]

    def gaps(self) -> list[float]:
        """Seconds from each task's ``done`` to the next task's ``started`` in this worker."""
        out, last_done = [], None
        for e in self.events:
            if e.get("event") == "done":
                last_done = epoch(e)
            elif e.get("event") == "started" and last_done is not None:
                out.append(epoch(e) - last_done)
                last_done = None
        return out

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60) -> int:
        """Wait for exit and for its output to be read; kill it and raise after ``timeout``."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"worker did not exit within {timeout:.0f}s; last output: {self.raw[-5:]}") from None
        for t in self._threads:
            t.join(10)
        return code

    def kill_group(self) -> None:
        """SIGKILL the worker's whole process group, task process included (needs ``new_session``).

        What a container kill, an OOM kill of the pod or a lost node does: nothing of the
        worker survives to hand its task back; only the lease running out frees it.
        """
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def kill(self) -> None:
        """SIGKILL the worker (its task process, orphaned, exits when it sees the pipe close)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
