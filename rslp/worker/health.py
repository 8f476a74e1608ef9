"""Is it the worker or the tasks? The check a worker runs on itself after a run of failed tasks.

A task's failure is the task's: it is retried (republished, so any worker may take
it) and then dead-lettered, and a message must never be able to stop a worker (three
``common/fail`` messages once stopped every worker that pulled them). But a worker
can be unwell in a way no message caused (a full or read-only scratch disk, a task
process that dies at start, a broken environment), and then every task fails on it
while the same tasks succeed elsewhere; it should stop rather than burn through the
queue's retries.

The rule: after ``--retries`` distinct tasks failed in a row on a worker, it checks
itself with work whose outcome no message can choose: it makes, writes, reads and
deletes a folder under its scratch root, then starts a fresh task process and runs
the canary :data:`CANARY` (``common/noop``) in it. If both pass, the failures were
the tasks' own and the streak starts again; if either fails, the worker is unwell and
exits (code 3) with one line saying what failed.

This module decides nothing else and never touches the queue.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

from rslp.errors import typed
from rslp.task import Task
from rslp.worker.runner import TaskRunner

#: The task a worker runs on itself: it touches nothing, so only the worker can fail it.
CANARY = Task(project="common", workflow="noop")
#: Seconds the canary may take, task process start included (imports take a few seconds).
CANARY_TIME_LIMIT = 120.0


def health_problem(runner: TaskRunner, scratch_root: Path, interrupted: Any) -> str | None:
    """What is wrong with this worker itself, in one line, or None if it is well.

    ``interrupted`` is the worker's shutdown event: preempted during the check, the
    worker is not judged (None), and its loop exits as preempted.
    """
    probe = scratch_root / f".health-{uuid.uuid4().hex[:12]}"
    try:
        scratch_root.mkdir(mode=0o700, parents=True, exist_ok=True)
        probe.mkdir(mode=0o700)
        (probe / "probe").write_bytes(b"ok")
        if (probe / "probe").read_bytes() != b"ok":
            return f"its scratch root {scratch_root} does not read back what was written"
    except OSError as e:
        return f"cannot use its scratch root {scratch_root}: {typed(e)}"
    try:
        runner.stop()  # a fresh task process: the old one may be what is broken
        try:
            runner.start()
        except Exception as e:  # noqa: BLE001 - any failure to start is the worker's
            return f"cannot start its task process: {typed(e)}"
        outcome = runner.run(CANARY, CANARY_TIME_LIMIT, str(probe), interrupted)
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    if outcome.ok or interrupted.is_set():
        return None
    return f"its task process cannot run the {CANARY.name} canary ({outcome.kind}: {outcome.reason})"
