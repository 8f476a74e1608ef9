"""What every benchmark shares: the emulator, queue backends, real worker processes, statistics.

Workers are the real CLI (``python -m rslp.cli worker``) in subprocesses; what they did
is read from their JSON log events on stderr (``worker_started``, ``received``,
``started``, ``done``, ``idle_exit``), whose ISO timestamps come from the same clock
as this process's ``time.time()``. Per-task timings are therefore the worker's own
account, not an outside guess.
"""

from __future__ import annotations

import compileall
import json
import os
import shutil
import statistics
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rslp.queue import Outgoing, Queue, open_queue
from rslp.task import Task
from rslp.testing import workers
from rslp.testing.emulator import running_emulator

REPO = Path(__file__).resolve().parents[1]
PROJECT = "rslp-bench"

_emulator_host: str | None = None


@contextmanager
def emulator() -> Iterator[str]:
    """A running Pub/Sub emulator with PUBSUB_EMULATOR_HOST set; nested uses share the outer one."""
    global _emulator_host
    if _emulator_host is not None:
        yield _emulator_host
        return
    old = os.environ.get("PUBSUB_EMULATOR_HOST")
    with running_emulator() as host:
        _emulator_host = os.environ["PUBSUB_EMULATOR_HOST"] = host
        try:
            yield host
        finally:
            _emulator_host = None
            if old is None:
                os.environ.pop("PUBSUB_EMULATOR_HOST", None)
            else:
                os.environ["PUBSUB_EMULATOR_HOST"] = old


def compile_code() -> None:
    """Write the bytecode of this tree's ``rslp`` and ``bench``, as installing a package does.

    pip compiles a package's modules when it installs them (the worker image has them).
    Where ``PYTHONDONTWRITEBYTECODE`` is set (this machine sets it), a source tree gets
    none, and every fresh process compiles each module it imports from source: about
    35 ms in ``rslp run`` before it starts its workers. Benchmarks that time process
    start-ups call this first, so they time the code and not its compilation.
    """
    for package in ("rslp", "bench"):
        compileall.compile_dir(REPO / package, quiet=1)


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary folder, removed afterwards whatever happens."""
    path = Path(tempfile.mkdtemp(prefix=f"rslp-bench-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True)
class Backend:
    """A queue backend the benchmarks run on: ``embedded`` (SQLite) or ``emulator`` (Pub/Sub)."""

    name: str
    url: str

    def open(self) -> Queue:
        return open_queue(self.url, create=True)


def backend(name: str, folder: Path) -> Backend:
    """The embedded queue in ``folder``, or the emulator (which must be running)."""
    if name == "embedded":
        return Backend(name, f"local://{folder / 'queue.db'}")
    if name == "emulator":
        return Backend(name, f"pubsub://{PROJECT}")
    raise ValueError(f"unknown backend {name!r}")


def fresh_topic(q: Queue, prefix: str) -> str:
    """A new topic with a subscription of the same name, so runs never see each other's messages."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    q.setup(name, name)
    return name


def enqueue(q: Queue, topic: str, workflow: str, args_list: list[list[str]]) -> None:
    """Publish one ``common`` task per args list (confirmed, in chunks of 1000)."""
    messages = [Outgoing(Task(project="common", workflow=workflow, args=args).encode()) for args in args_list]
    for i in range(0, len(messages), 1000):
        q.publish(topic, messages[i : i + 1000])


def child_env() -> dict[str, str]:
    """The environment of a worker subprocess: this one's, plus the repo on the path."""
    return {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled"}


class WorkerProc(workers.WorkerProc):
    """A real worker run from ``scratch`` (its working directory), its task scratch dirs under it.

    Benchmarks send the diagnostics (``sleep``, ``write_file``...), so their workers allow them.
    """

    def __init__(
        self, queue_url: str, subscription: str, scratch: Path, env: dict[str, str] | None = None, **flags: Any
    ) -> None:
        flags = {"scratch_root": str(scratch / "worker-scratch"), "allow_diagnostics": True, **flags}
        super().__init__(queue_url, subscription, cwd=scratch, env={**child_env(), **(env or {})}, **flags)


def run_workers(
    queue_url: str, subscription: str, scratch: Path, count: int, timeout: float, **flags: Any
) -> list[WorkerProc]:
    """Start ``count`` workers, wait until all have exited, and return them."""
    workers = [WorkerProc(queue_url, subscription, scratch, **flags) for _ in range(count)]
    try:
        for w in workers:
            w.wait(timeout)
    finally:
        for w in workers:
            if w.proc.poll() is None:
                w.proc.kill()
    return workers


def peak_rss_kb() -> int:
    """This process's peak resident set (``VmHWM``), in kB.

    Not getrusage's ``ru_maxrss``: Linux carries that over fork and exec, so a fresh
    child of a big parent (run_all after the enqueue benchmark) reports the parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100), interpolated between the closest ranks."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def print_result(name: str, result: dict[str, Any]) -> None:
    """Print a benchmark's figures as JSON (what ``python -m bench.X`` shows)."""
    print(json.dumps({name: result}, indent=2, default=str))
