"""Test harness: real worker processes (`python -m rslp.cli worker`) whose JSON log events we watch."""

from __future__ import annotations

import json
import os
import queue as stdlib_queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rslp.queue import Outgoing, Queue, dead_letter_name
from rslp.task import Task

REPO = Path(__file__).resolve().parents[2]


class WorkerProc:
    """One worker subprocess; its stderr JSON events are collected by a reader thread."""

    def __init__(self, queue_url: str, subscription: str, **flags: Any) -> None:
        args = [sys.executable, "-m", "rslp.cli", "worker", "--queue", queue_url, "--subscription", subscription]
        flags = {"idle_timeout": 30, "retry_sleep": 0, "scratch_root": "/tmp/rslp-test-scratch", **flags}
        for k, v in flags.items():
            args += [f"--{k}", str(v).lower() if isinstance(v, bool) else str(v)]
        env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled"}
        self.proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
        self.events: list[dict[str, Any]] = []
        self._new: stdlib_queue.Queue[dict[str, Any]] = stdlib_queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = {"event": "raw", "line": line.rstrip()}
            self.events.append(event)
            self._new.put(event)

    def wait_for(self, name: str, timeout: float = 30, **match: Any) -> dict[str, Any]:
        """Block until an event called ``name`` (with ``match`` fields) is logged."""
        for e in self.events:
            if e.get("event") == name and all(e.get(k) == v for k, v in match.items()):
                return e
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                e = self._new.get(timeout=0.1)
            except stdlib_queue.Empty:
                continue
            if e.get("event") == name and all(e.get(k) == v for k, v in match.items()):
                return e
        raise AssertionError(f"no {name!r} event within {timeout}s; last events: {self.events[-8:]}")

    def count(self, name: str) -> int:
        return sum(e.get("event") == name for e in self.events)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


def publish_tasks(q: Queue, topic: str, tasks: list[Task]) -> None:
    q.publish(topic, [Outgoing(t.encode()) for t in tasks])


def drain(q: Queue, subscription: str, lease: float, timeout: float = 5) -> list[Any]:
    """Everything currently on ``subscription`` (acked, so removed)."""
    out = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = q.pull(subscription, lease, max_messages=50)
        if not got:
            if out:
                break
            time.sleep(0.2)
            continue
        for m in got:
            out.append(m)
            q.ack(m)
    return out


def dead_letters(q: Queue, subscription: str, lease: float, expect: int, timeout: float = 30) -> list[Any]:
    """Collect at least ``expect`` dead letters of ``subscription`` (or fail after ``timeout``)."""
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < expect and time.monotonic() < deadline:
        for m in q.pull(dead_letter_name(subscription), lease, max_messages=50):
            got.append(m)
            q.ack(m)
        time.sleep(0.1)
    return got
