"""``rslp run``: a whole job on this machine, for debugging and small areas.

The same path as a fleet, scaled down: write_jobs onto an embedded queue in the job
root, then N worker processes (the real worker CLI) pull from the job's subscriptions,
later steps first. Workers exit when idle; if tasks are still queued or leased then (a
worker died and its lease has not yet expired), fresh workers are started, so the job
ends only when the queue is drained. It succeeds when every job output exists, and
otherwise raises with the dead-letter reasons from the ledger.

The console gets a screenful: the job, one line per step as it completes, and the
outputs. The workers' and write_jobs' structured logs go to JOB_ROOT/logs/ (``verbose``
prints them instead).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from upath import UPath

from rslp import log
from rslp.errors import PermanentError
from rslp.jobroot import JobRoot
from rslp.pipeline import timerange
from rslp.pipeline.config import load_pipeline_config, subscriptions
from rslp.queue import open_queue
from rslp.queue.placement import default_queue_url
from rslp.storage import absolute, is_local
from rslp.worker.lease import DEFAULT_LEASE_SECONDS
from rslp.worker.settings import worker_command as settings_command

if TYPE_CHECKING:
    from rslp.pipeline.progress import StepProgress

logger = log.get(__name__)
#: How often the console's progress lines read the markers while workers run.
PROGRESS_INTERVAL = 1.0


def worker_command(
    queue: str, subs: list[str], idle_timeout: float, lease_seconds: float, job_root: str | None = None
) -> list[str]:
    """The command line of one local worker (pinned to ``job_root`` when given)."""
    settings = {"queue": queue, "subscription": subs, "idle_timeout": idle_timeout, "lease_seconds": lease_seconds}
    return settings_command({**settings, "job_roots": job_root}, here=True)


def _pending(queue: str, subs: list[str]) -> int:
    """Messages queued or leased on ``subs`` (the embedded queue always knows)."""
    with open_queue(queue) as q:
        total = 0
        for sub in subs:
            counts = q.counts(sub)
            if counts is not None:
                total += counts.backlog + (counts.in_flight or 0)
        return total


def _wait(procs: list[subprocess.Popen[bytes]], progress: StepProgress) -> None:
    """Wait for every worker to exit, printing steps as they complete."""
    while alive := [proc for proc in procs if proc.poll() is None]:
        progress.update()
        with contextlib.suppress(subprocess.TimeoutExpired):
            alive[0].wait(timeout=PROGRESS_INTERVAL)  # returns at once when it exits
    progress.update()


def dead_reasons(job_root: str) -> list[str]:
    """``step partition: reason`` for every dead-lettered task of the job."""
    ledger = JobRoot(job_root)
    reasons = []
    for step in ledger.steps():
        for task_id, state in ledger.states(step).items():
            if state == "dead":
                payload = _read_json(ledger.marker_path(step, task_id, "dead"))
                partition = payload.get("task", {}).get("partition")
                reasons.append(f"{step} {partition}: {payload.get('error', 'no reason recorded')}")
    return sorted(reasons)


def _read_json(path: UPath) -> dict[str, Any]:
    import json

    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except (FileNotFoundError, ValueError):
        return {}


def run(
    config: str,
    request: str,
    job_root: str | None = None,
    workers: int = 2,
    idle_timeout: float = 5.0,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    verbose: bool = False,
    start: str | None = None,
    end: str | None = None,
) -> list[str]:
    """Run a whole job on this machine: embedded queue, WORKERS local worker processes.

    Enqueues the job with write_jobs (an embedded queue on local disk), runs WORKERS worker
    processes until the queue is drained, and prints where the merged outputs are.
    Rerunning it on the same JOB_ROOT finishes an interrupted job.

    Args:
        config: the pipeline.yaml.
        request: the request GeoJSON (WGS84).
        job_root: where the job's manifest, markers, datasets, queue and outputs go, a
            local folder or gs://BUCKET/PATH (then the embedded queue stays on local disk;
            default: runs/<request name>-<time> in the current directory).
        workers: local worker processes.
        idle_timeout: a worker exits after this many seconds with nothing to do.
        lease_seconds: how soon the task of a worker that died is handed to another.
        verbose: print every log line instead of writing them to JOB_ROOT/logs/.
        start: start of the imagery period (ISO 8601); see ``rslp write-jobs --help``.
        end: end of the imagery period (ISO 8601, exclusive).

    Returns:
        The paths of the job's outputs (one per postprocessor).
    """
    pipeline = load_pipeline_config(config)
    root = job_root or os.path.join("runs", f"{UPath(request).stem}-{time.strftime('%Y%m%d-%H%M%S')}")
    root = absolute(root)
    queue = default_queue_url(root)
    started = time.monotonic()
    subs = subscriptions(pipeline.partition_steps + pipeline.job_steps, pipeline.topics)
    with open_queue(queue, create=True) as q:
        for topic in subs:
            q.setup(topic, topic)
    command = worker_command(queue, subs, idle_timeout, lease_seconds, job_root=root)
    # Logs are appended to, so they live on local disk: in the job root, or beside the queue for gs://.
    local_root = is_local(root)
    logs = Path(root) / "logs" if local_root else Path(queue.removeprefix("local://")).with_suffix(".logs")
    logs.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        worker_log = None if verbose else stack.enter_context(open(logs / "workers.log", "ab"))
        if not verbose:
            stack.enter_context(contextlib.redirect_stderr(stack.enter_context(open(logs / "run.log", "a"))))

        def start_workers() -> list[subprocess.Popen[bytes]]:
            return [subprocess.Popen(command, stdout=worker_log, stderr=worker_log) for _ in range(workers)]

        # Workers start while write_jobs runs: their start-up (imports) overlaps the enqueue. So do
        # the enqueue's own imports (partitioning pulls in rasterio, pyproj, shapely: about 0.3 s),
        # made only now, so that nothing this process does delays the workers' start.
        procs = start_workers()
        from rslp.pipeline.job import Job
        from rslp.pipeline.progress import StepProgress
        from rslp.pipeline.write_jobs import enqueue, summary

        try:
            # The workers are this command's own: the user needs no worker command, only the watch one.
            print(summary(*enqueue(config, request, root, queue, timerange.from_flags(start, end))))
        except BaseException:
            for proc in procs:
                proc.terminate()
            raise
        job = Job.load(root)
        progress = StepProgress(job.manifest)
        rounds = 0
        while True:
            rounds += 1
            _wait(procs, progress)
            if _pending(queue, subs) == 0:
                break
            logger.info("tasks still queued or leased; starting workers again", round=rounds)
            procs = start_workers()
    outputs = job.output_paths()
    if missing := [str(p) for p in outputs if not p.exists()]:
        reasons = dead_reasons(root)
        detail = f"{len(reasons)} tasks dead-lettered; first: {reasons[0]}" if reasons else "no task failed for good"
        raise PermanentError(f"job {job.manifest.job_id} did not finish ({detail}); missing {missing[0]}; logs: {logs}")
    print(f"job {job.manifest.job_id} finished in {time.monotonic() - started:.0f} s (logs: {logs}); outputs:")
    for path in outputs:
        print(f"  {path}")
    return [str(p) for p in outputs]
