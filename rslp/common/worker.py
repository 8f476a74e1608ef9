"""The ancestor's worker API, kept for users' scripts: ``worker``, ``worker_pipeline``, ``write_jobs``.

``python -m rslp.main common worker --project_id P --subscription_id S`` and
``rslp worker --queue URL --subscription S`` both end in :func:`worker`.
"""

from __future__ import annotations

from tqdm import tqdm

from rslp.queue import Outgoing, open_queue
from rslp.task import Task
from rslp.worker import WorkerSettings, run_worker
from rslp.worker.lease import DEFAULT_LEASE_SECONDS


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
) -> str:
    """Run a worker: pull tasks one at a time and run them until idle or preempted.

    Args:
        project_id: Google Cloud project (the ancestor's flag; same as --queue pubsub://PROJECT).
        subscription_id: subscription to pull from (the ancestor's flag).
        queue: pubsub://PROJECT_ID or local://PATH.db.
        subscription: subscriptions to pull from, comma-separated, most preferred first.
        idle_timeout: exit after this many seconds with nothing to do (<= 0: never).
        retries: exit after this many consecutive failed tasks.
        retry_sleep: backoff in seconds before a failed task's first retry (doubles each attempt).
        max_attempts: runs per task before it is dead-lettered.
        lease_seconds: lease length, extended every third of it while the task runs; how soon
            the task of a worker that died outright runs again (Pub/Sub's minimum is 10).
        max_lease: no task runs longer than this (seconds).
        time_limit: default per-task time limit when neither the task nor its workflow sets one.
        grace_seconds: on SIGTERM, let the running task finish if it does within this.
        scratch_root: where per-task scratch directories go (deleted after each task).
        worker_id: name in logs and markers (default: $RSLP_WORKER_NAME or host, plus pid).
        flush_messages: ack every message without running it, then exit (drains a subscription).
        metrics_port: serve Prometheus metrics (tasks by outcome, task durations, lease extensions) on this port.
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
        scratch_root=scratch_root,
        worker_id=worker_id,
        flush_messages=flush_messages,
        metrics_port=metrics_port,
    )
    return run_worker(settings)


def worker_pipeline(
    project_id: str,
    subscription_id: str,
    retries: int = 3,
    retry_sleep: float = 10.0,
    idle_timeout: float = 10.0,
    flush_messages: bool = False,
) -> str:
    """The ancestor's Python entry point for a Pub/Sub worker."""
    return worker(
        project_id=project_id,
        subscription_id=subscription_id,
        retries=retries,
        retry_sleep=retry_sleep,
        idle_timeout=idle_timeout,
        flush_messages=flush_messages,
    )


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
            ids += queue.publish(topic_id, [Outgoing(t.encode()) for t in tasks[i : i + chunk]])
        return ids
