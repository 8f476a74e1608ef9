"""The ancestor's worker API, kept for users' scripts: ``worker``, ``worker_pipeline``, ``write_jobs``.

``python -m rslp.main common worker --project_id P --subscription_id S`` and
``rslp worker --queue URL --subscription S`` both end in :func:`worker`.
"""

from __future__ import annotations

from tqdm import tqdm

from rslp.errors import ExitCode
from rslp.queue import open_queue
from rslp.queue.base import encode_task
from rslp.task import Task
from rslp.trust import Trust
from rslp.worker import WorkerSettings, run_worker
from rslp.worker.guard import job_roots_from
from rslp.worker.lease import DEFAULT_LEASE_SECONDS

#: Where ``--manage_scratch_dir_on_data_disk true`` puts task scratch: the ancestor's
#: folder on the host's /data disk, which Beaker mounts and which on some machines is
#: much bigger than the container's own disk.
DATA_DISK_SCRATCH = "/data/rslearn_projects/scratch"


def worker(
    project_id: str | None = None,
    subscription_id: str | None = None,
    queue: str | None = None,
    subscription: str | None = None,
    idle_timeout: float = 10.0,
    retries: int = 3,
    retry_sleep: float = 10.0,
    max_attempts: int = 3,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    max_lease: float = 24 * 3600.0,
    time_limit: float | None = None,
    grace_seconds: float = 0.0,
    scratch_root: str | None = None,
    worker_id: str | None = None,
    flush_messages: bool = False,
    metrics_port: int | None = None,
    metrics_address: str = "127.0.0.1",
    job_roots: str | None = None,
    max_delay: float = 3600.0,
    cloud_patience: float = 300.0,
    manage_scratch_dir_on_data_disk: bool = False,
    allow_diagnostics: bool = False,
    exit_on_failures: bool = False,
    trusted_checkpoints: str | None = None,
    class_prefixes: str | None = None,
) -> ExitCode:
    """Run a worker: pull tasks one at a time and run them until idle or preempted.

    Returns the process exit code (:class:`~rslp.errors.ExitCode`): 0 when idle or
    preempted, 3 when the worker itself is unwell (see --retries).

    The ancestor's entry points (``python -m rslp.main common worker``,
    :func:`worker_pipeline`) trusted their topic: there ``allow_diagnostics`` and
    ``exit_on_failures`` default to true.

    Args:
        project_id: Google Cloud project (the ancestor's flag; same as --queue pubsub://PROJECT).
        subscription_id: subscription to pull from (the ancestor's flag).
        queue: pubsub://PROJECT_ID or local://PATH.db.
        subscription: subscriptions to pull from, comma-separated, most preferred first.
        idle_timeout: exit after this many seconds with nothing to do (<= 0: never).
        retries: after this many consecutive failed tasks, check the worker's own health and exit
            if it is unwell (with --exit_on_failures: exit at once, the ancestor's contract).
        retry_sleep: backoff in seconds before a failed task's first retry (doubles each attempt).
        max_attempts: runs per task before it is dead-lettered.
        lease_seconds: lease length, extended every third of it while the task runs; how soon
            the task of a worker that died outright runs again (Pub/Sub's minimum is 10).
        max_lease: no task runs longer than this (seconds).
        time_limit: per-task time limit; the smallest of this, the workflow's and the task's wins.
        grace_seconds: on SIGTERM, let the running task finish if it does within this.
        scratch_root: where per-task scratch directories go (deleted after each task).
        worker_id: name in logs and markers (default: $RSLP_WORKER_NAME or host, plus pid).
        flush_messages: ack every message without running it, then exit (drains a subscription).
        metrics_port: serve Prometheus metrics (tasks by outcome, task durations, lease extensions) on this port.
        metrics_address: the metrics server's address (default loopback; 0.0.0.0 serves every interface).
        job_roots: comma-separated job-root prefixes a message may name, e.g. gs://bucket/jobs
            (default: $RSLP_JOB_ROOTS; unset, local paths only).
        max_delay: dead-letter a task whose not_before is more than this many seconds away.
        cloud_patience: seconds to ride out transient queue errors before exiting with code 5.
        manage_scratch_dir_on_data_disk: the ancestor's flag: put task scratch on the /data
            disk (under /data/rslearn_projects/scratch) unless --scratch_root is given. Either
            way each task's scratch dir is deleted after the task and on preemption.
        allow_diagnostics: run the diagnostics that write files, fail or hold the worker
            (write_file, sleep, fail, crash, spin, chain) from messages; noop always runs.
        exit_on_failures: exit 3 after --retries consecutive failed tasks, whatever failed them.
        trusted_checkpoints: comma-separated checkpoint locations whose files may be fully
            unpickled (default: $RSLP_TRUSTED_CHECKPOINTS); others load as weights only.
        class_prefixes: comma-separated module prefixes config class paths may name besides
            rslearn, rslp and torch.nn (default: $RSLP_CLASS_PREFIXES).
    """
    if queue is None:
        if project_id is None:
            raise ValueError("give --queue pubsub://PROJECT or local://PATH.db, or --project_id")
        queue = f"pubsub://{project_id}"
    subscriptions = [s for s in (subscription or "").split(",") if s]
    if subscription_id:
        subscriptions.insert(0, subscription_id)
    if not subscriptions:
        raise ValueError("give --subscription (or the ancestor's --subscription_id)")
    trust = Trust.from_flags(trusted_checkpoints, class_prefixes)
    settings = WorkerSettings(
        queue=queue,
        subscriptions=subscriptions,
        idle_timeout=idle_timeout,
        retries=retries,
        retry_sleep=retry_sleep,
        max_attempts=max_attempts,
        lease_seconds=lease_seconds,
        max_lease=max_lease,
        default_time_limit=time_limit,
        grace_seconds=grace_seconds,
        scratch_root=scratch_root_for(scratch_root, manage_scratch_dir_on_data_disk),
        worker_id=worker_id,
        flush_messages=flush_messages,
        metrics_port=metrics_port,
        metrics_address=metrics_address,
        job_roots=list(job_roots_from(job_roots)),
        max_delay=max_delay,
        cloud_patience=cloud_patience,
        allow_diagnostics=allow_diagnostics,
        exit_on_failures=exit_on_failures,
        trusted_checkpoints=list(trust.checkpoints),
        class_prefixes=list(trust.class_prefixes),
    )
    return run_worker(settings)


def worker_pipeline(
    project_id: str,
    subscription_id: str,
    retries: int = 3,
    retry_sleep: float = 10.0,
    idle_timeout: float = 10.0,
    flush_messages: bool = False,
    manage_scratch_dir_on_data_disk: bool = False,
) -> ExitCode:
    """The ancestor's Python entry point for a Pub/Sub worker; returns the exit code.

    As in the ancestor it trusts its topic: diagnostics run from messages, and ``retries``
    failed tasks in a row end the worker with exit code 3.
    """
    return worker(
        project_id=project_id,
        subscription_id=subscription_id,
        retries=retries,
        retry_sleep=retry_sleep,
        idle_timeout=idle_timeout,
        flush_messages=flush_messages,
        manage_scratch_dir_on_data_disk=manage_scratch_dir_on_data_disk,
        allow_diagnostics=True,
        exit_on_failures=True,
    )


def scratch_root_for(scratch_root: str | None, manage_scratch_dir_on_data_disk: bool) -> str | None:
    """The worker's scratch root: the one given, else the data disk if asked, else the worker's default.

    The ancestor symlinked one shared /tmp/scratch onto /data and deleted it on SIGTERM;
    this worker already gives each task its own scratch dir (``$RSLP_SCRATCH_DIR``, also
    Python's tempdir) and deletes it after the task and on preemption, so the flag only
    chooses the disk.
    """
    if scratch_root is None and manage_scratch_dir_on_data_disk:
        return DATA_DISK_SCRATCH
    return scratch_root


def write_jobs(
    project_id: str, topic_id: str, rslp_project: str, rslp_workflow: str, args_list: list[list[str]]
) -> list[str]:
    """Publish one task per entry of ``args_list`` to a Pub/Sub topic (the ancestor's API).

    Publishes are batched and confirmed together; returns the message ids.
    """
    tasks = [Task(project=rslp_project, workflow=rslp_workflow, args=args) for args in args_list]
    with open_queue(f"pubsub://{project_id}") as queue:
        ids: list[str] = []
        chunk = 1000
        for i in tqdm(range(0, len(tasks), chunk), desc=f"publish to {topic_id}", unit="batch", disable=None):
            ids += queue.publish(topic_id, [encode_task(t) for t in tasks[i : i + chunk]])
        return ids
