"""The ancestor's worker API, kept for users' scripts: ``worker``, ``worker_pipeline``, ``write_jobs``.

``python -m rslp.main common worker --project_id P --subscription_id S`` and
``rslp worker --queue URL --subscription S`` both end in :func:`worker`, which takes
the worker's settings whole (:class:`~rslp.worker.settings.WorkerSettings`: its fields
are both commands' flags).
"""

from __future__ import annotations

from tqdm import tqdm

from rslp.argv import Flags
from rslp.errors import ExitCode
from rslp.queue import open_queue
from rslp.queue.base import encode_task
from rslp.task import Task
from rslp.worker.loop import run_worker
from rslp.worker.settings import WorkerSettings


def worker(settings: Flags[WorkerSettings]) -> ExitCode:
    """Run a worker: pull tasks one at a time and run them until idle or preempted.

    Returns the process exit code (:class:`~rslp.errors.ExitCode`): 0 when idle or
    preempted, 3 when the worker itself is unwell (see --retries).

    The ancestor's entry points (``python -m rslp.main common worker``,
    :func:`worker_pipeline`) trusted their topic: there ``allow_diagnostics`` and
    ``exit_on_failures`` default to true.
    """
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
    failed tasks in a row end the worker with exit code 3. Its signature is the
    ancestor's and never changes; every other setting is the worker's default.
    """
    settings = WorkerSettings(
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
    return run_worker(settings)


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
