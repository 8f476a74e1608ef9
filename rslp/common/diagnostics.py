"""Diagnostic workflows for smoke and fault tests of a fleet.

Each leaves a trace or fails in one well-defined way, so that a test (or a user
checking a new fleet) can tell what happened from outside: ``write_file`` and
``sleep`` write files, ``fail`` raises, ``crash`` kills its own process, ``spin``
holds the CPU and the GIL, ``noop`` measures pure per-task overhead.
"""

import os
import signal
import time

from upath import UPath

from rslp.task import Downstream, Task


def write_file(fname: str, contents: str) -> None:
    """Write CONTENTS to FNAME (any UPath): the ancestor's smoke-test workflow."""
    UPath(fname).write_text(contents)


def sleep(seconds: float, fname: str | None = None) -> None:
    """Sleep SECONDS, then write FNAME if given: a slow canary that leaves a trace."""
    time.sleep(seconds)
    if fname:
        UPath(fname).write_text(f"slept {seconds}\n")


def fail(message: str) -> None:
    """Raise RuntimeError(MESSAGE): a task that always fails."""
    raise RuntimeError(message)


def crash() -> None:
    """Kill the process running the task with SIGKILL, as an OOM kill would."""
    os.kill(os.getpid(), signal.SIGKILL)


def spin(seconds: float, fname: str | None = None) -> None:
    """Busy-loop in pure Python for SECONDS (holds the GIL), then append a line to FNAME if given.

    Appending (not overwriting) lets a test count how many times the task really ran, and
    the line's start and end times (seconds since the epoch) whether two runs overlapped.
    """
    started = time.time()
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    if fname:
        with UPath(fname).open("a") as f:
            f.write(f"spun {n} from {started:.6f} to {time.time():.6f}\n")


def chain(fname: str, topic: str, then: str, contents: str = "chained", seconds: float = 0.0) -> list[Downstream]:
    """After SECONDS, write FNAME, then ask for a downstream write_file of THEN on TOPIC: a smoke test of chaining."""
    time.sleep(seconds)
    UPath(fname).write_text(contents)
    return [Downstream(topic=topic, task=Task(project="common", workflow="write_file", args=[then, contents]))]


def noop() -> None:
    """Do nothing: measures the worker's own per-task overhead."""
