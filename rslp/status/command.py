"""``rslp status``: the command: one job's report (once, or redrawn with ``--watch``), or a rolling root's periods.

Reads with :func:`rslp.status.model.collect`, shows with :func:`rslp.status.render.render`;
like the rest of :mod:`rslp.status` it only reads (the map and plot PNGs go where the
user says, never into a job root).
"""

from __future__ import annotations

import time
from typing import Any

from upath import UPath

from rslp.console import printable
from rslp.errors import PermanentError
from rslp.status.model import JobStatus, collect
from rslp.status.render import render

_CLEAR = "\x1b[H\x1b[2J"


def status(
    job_root: str | None = None,
    watch: bool = False,
    interval: float = 10.0,
    map: str | None = None,
    top: int = 10,
    root: str | None = None,
    plot: str | None = None,
) -> JobStatus | list[Any]:
    """Show where a job stands: per-step task counts, throughput, ETA, backlog, failure reasons.

    Reads the job root's manifest and markers (one listing per step) and asks the
    queue for its backlog (the embedded queue knows; Pub/Sub needs Cloud Monitoring).
    With --root instead, shows a rolling root's periods (:mod:`rslp.status.history`).

    Args:
        job_root: the job root (local path or gs://...) that write-jobs created.
        watch: redraw every INTERVAL seconds until nothing is left to run (`--watch`; Ctrl-C stops).
        interval: seconds between redraws with --watch.
        map: also draw the partitions coloured by state into this PNG.
        top: how many failure reasons to show.
        root: a rolling root (rslp rolling): one row per period (tasks done/total, drift, warning).
        plot: with --root, also draw the class distribution and drift across periods into this PNG.
    """
    if (job_root is None) == (root is None):
        raise PermanentError("give --job_root (one job) or --root (a rolling root's periods), not both or neither")
    if root is not None:
        from rslp.status.history import history

        if not UPath(root).exists():
            raise FileNotFoundError(f"rolling root {root} does not exist (rslp rolling --root makes one)")

        return history(root, plot)
    assert job_root is not None
    while True:
        job = collect(job_root, top=top)
        if map:
            from rslp.status.map import write_map

            write_map(job.manifest, job.partitions, map)
        text = printable(render(job) + (f"\n\nmap: {map}" if map else ""))
        if not watch:
            print(text)
            return job
        print(_CLEAR + text, flush=True)
        if job.finished:
            return job
        try:
            time.sleep(interval)
        except KeyboardInterrupt:
            return job
