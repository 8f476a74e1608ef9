"""The ancestor's ``common launch`` workflow, kept so existing scripts keep working.

``python -m rslp.main common launch --image_name IMG --project_id P --subscription_id S
--num_workers N --gpus 1 --shared_memory 256GiB --cluster '["ai2/x"]'`` launches a
fleet pulling subscription S of Pub/Sub project P. It is a thin translation onto
:func:`rslp.launch.commands.launch` (``rslp launch``), which has every option; this
signature only grows with defaults, never changes. Parameters are keyword-only, as
the ancestor's command line always names them: the workflow parser then keeps
``--image_name IMG`` a flag instead of expecting a positional value.
"""

from __future__ import annotations

import re

from rslp.launch import commands
from rslp.launch.config import DEFAULT_GCP_CREDENTIALS_SECRET, Priority
from rslp.launch.pool import PoolSettings


def launch(
    *,
    image_name: str,
    project_id: str,
    subscription_id: str,
    num_workers: int,
    gpus: int = 0,
    shared_memory: str | None = None,
    cluster: list[str] | None = None,
    priority: Priority = "low",
    workspace: str | None = None,
    budget: str | None = None,
    fleet: str | None = None,
    idle_timeout: int | None = None,
    retries: int | None = None,
    retry_sleep: float | None = None,
    gcp_credentials_secret: str = DEFAULT_GCP_CREDENTIALS_SECRET,
    no_gcp_credentials: bool = False,
    env: dict[str, str] | None = None,
    secret_env: dict[str, str] | None = None,
    weka_mounts: list[str] | None = None,
    timeout: str | None = None,
    preemptible: bool = True,
    dry_run: bool = False,
) -> list[str]:
    """Launch NUM_WORKERS Beaker workers that pull SUBSCRIPTION_ID of Pub/Sub project PROJECT_ID.

    Args:
        image_name: Beaker image with rslp installed.
        project_id: GCP project of the Pub/Sub subscription.
        subscription_id: the subscription the workers pull from.
        num_workers: how many workers to start.
        gpus: GPUs per worker.
        shared_memory: shared memory per worker, e.g. 256GiB.
        cluster: Beaker clusters, e.g. '["ai2/jupiter"]'.
        priority: Beaker priority (low by default).
        workspace: Beaker workspace (default: the Beaker config's default workspace).
        budget: Beaker budget to charge.
        fleet: fleet name (default: derived from the subscription id).
        idle_timeout: seconds without a task before a worker exits (default: 1800 with GPUs, 600 without).
        retries: consecutive failures before a worker exits.
        retry_sleep: seconds a worker waits after a failure.
        gcp_credentials_secret: Beaker secret with a GCP service-account key, mounted
            as the file GOOGLE_APPLICATION_CREDENTIALS names (the ancestor's default).
        no_gcp_credentials: mount no GCP credentials.
        env: extra environment variables.
        secret_env: env var name -> Beaker secret name.
        weka_mounts: Weka buckets to mount, each BUCKET:MOUNT_PATH.
        timeout: maximum runtime of a worker, e.g. 24h.
        preemptible: allow preemption (workers are resumed and pull again).
        dry_run: print the experiment specs and contact nothing.

    Returns:
        The names of the workers launched.
    """
    pool = PoolSettings(
        image=image_name,
        queue=f"pubsub://{project_id}",
        clusters=cluster or [],
        workspace=workspace,
        budget=budget,
        gpus=gpus,
        shared_memory=shared_memory,
        priority=priority,
        preemptible=preemptible,
        timeout=timeout,
        env=env,
        secret_env=secret_env,
        gcp_credentials_secret=gcp_credentials_secret,
        no_gcp_credentials=no_gcp_credentials,
        gcp_project=project_id,
        weka_mounts=weka_mounts,
        idle_timeout=idle_timeout,
        retries=retries,
        retry_sleep=retry_sleep,
    )
    fleet = fleet or fleet_name(subscription_id)
    return commands.launch(fleet, pool, subscription=subscription_id, num_workers=num_workers, dry_run=dry_run)


def fleet_name(subscription_id: str) -> str:
    """A valid fleet name from a subscription id: Beaker names allow fewer characters than Pub/Sub ids."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", subscription_id).lstrip("-._")[:64] or "rslp"
