"""What a user runs: ``rslp launch``, ``rslp fleet status NAME``, ``rslp fleet stop NAME``.

Plain typed functions, so the CLI can expose them as they are. They print for a
person and return data for a script. Every problem the user can fix (bad config, no
token, unknown workspace, no network) is raised as a one-line
:class:`~rslp.launch.beaker.FleetError`; the CLI prints it and exits non-zero.
A dry run builds and prints the specs and never contacts Beaker, so it needs no token.
"""

from __future__ import annotations

import yaml
from pydantic import ValidationError

from rslp.launch import FleetError
from rslp.launch.beaker import (
    BeakerFleetClient,
    FleetClient,
    WorkerStatus,
    build_spec,
    fleet_status,
    launch_fleet,
    new_launch_id,
    stop_fleet,
    worker_names,
)
from rslp.launch.config import DEFAULT_GCP_CREDENTIALS_PATH, DEFAULT_GCP_CREDENTIALS_SECRET, LaunchConfig, Priority
from rslp.launch.idle import default_idle_timeout
from rslp.worker.guard import JOB_ROOTS_ENV


def connect() -> FleetClient:
    """The Beaker client the commands use (tests replace this function)."""
    return BeakerFleetClient.from_env()


def launch(
    fleet: str,
    image: str,
    queue: str,
    subscription: str,
    num_workers: int,
    clusters: list[str],
    workspace: str | None = None,
    budget: str | None = None,
    gpus: int = 0,
    shared_memory: str | None = None,
    priority: Priority = "low",
    preemptible: bool = True,
    timeout: str | None = None,
    env: dict[str, str] | None = None,
    secret_env: dict[str, str] | None = None,
    gcp_credentials_secret: str = DEFAULT_GCP_CREDENTIALS_SECRET,
    gcp_credentials_path: str = DEFAULT_GCP_CREDENTIALS_PATH,
    no_gcp_credentials: bool = False,
    gcp_project: str | None = None,
    host_path_mounts: list[str] | None = None,
    weka_mounts: list[str] | None = None,
    idle_timeout: int | None = None,
    retries: int | None = None,
    retry_sleep: float | None = None,
    worker_args: list[str] | None = None,
    job_roots: str | None = None,
    dry_run: bool = False,
) -> list[str]:
    """Launch NUM_WORKERS workers of fleet FLEET on Beaker, each running `rslp worker`.

    Workers are named FLEET-LAUNCH-wI (LAUNCH is new each time), run at low priority
    and preemptible by default, pull from SUBSCRIPTION on QUEUE (e.g. pubsub://PROJECT)
    and exit when idle for IDLE_TIMEOUT seconds, so a drained fleet stops costing.

    Args:
        fleet: fleet name, the prefix of every worker's experiment name.
        image: Beaker image with rslp installed (see worker.Dockerfile).
        queue: queue URL, e.g. pubsub://PROJECT.
        subscription: the subscription workers pull from.
        num_workers: how many workers to start.
        clusters: Beaker clusters a worker may run on, e.g. '["ai2/jupiter"]'.
        workspace: Beaker workspace (default: the Beaker config's default workspace).
        budget: Beaker budget to charge, e.g. ai2/my-budget.
        gpus: GPUs per worker.
        shared_memory: shared memory per worker, e.g. 256GiB.
        priority: Beaker priority: low, normal, high, urgent or immediate.
        preemptible: allow preemption; a preempted worker is resumed and pulls again.
        timeout: maximum runtime of a worker, with a unit, e.g. 24h.
        env: environment variables, e.g. '{"RSLP_LOG_LEVEL": "DEBUG"}'.
        secret_env: env var name -> Beaker secret name, e.g. '{"WANDB_API_KEY": "my-wandb-key"}'.
        gcp_credentials_secret: Beaker secret holding a GCP service-account key (JSON);
            mounted in every worker as a file named by GOOGLE_APPLICATION_CREDENTIALS
            (default: the ancestor's RSLEARN_GCP_CREDENTIALS).
        gcp_credentials_path: where that key is mounted.
        no_gcp_credentials: mount no GCP credentials (workers that reach no Google service).
        gcp_project: GOOGLE_CLOUD_PROJECT in every worker (default: the project of a pubsub:// queue).
        host_path_mounts: node directories to mount, each HOST_PATH:MOUNT_PATH.
        weka_mounts: Weka buckets to mount, each BUCKET:MOUNT_PATH.
        idle_timeout: seconds without a task before a worker exits (default: 1800 with GPUs,
            600 without, so a pool fed by other pools outlasts their gaps; see rslp.launch.idle).
        retries: consecutive task failures before a worker exits (worker default if unset).
        retry_sleep: seconds a worker waits after a failed task (worker default if unset).
        worker_args: more arguments appended to the worker command.
        job_roots: the job roots this fleet serves, comma-separated prefixes (e.g. gs://bucket/jobs/JOB);
            workers refuse tasks of any other job root ($RSLP_JOB_ROOTS in each worker).
        dry_run: print the specs and contact nothing.

    Returns:
        The names of the workers launched (or that would be, on a dry run).
    """
    try:
        config = LaunchConfig.model_validate(
            {
                "fleet": fleet,
                "image": image,
                "workspace": workspace,
                "budget": budget,
                "clusters": clusters,
                "gpus": gpus,
                "shared_memory": shared_memory,
                "priority": priority,
                "preemptible": preemptible,
                "timeout": timeout,
                "env": {**(env or {}), **({JOB_ROOTS_ENV: job_roots} if job_roots else {})},
                "secret_env": secret_env or {},
                "gcp_credentials": (
                    None
                    if no_gcp_credentials
                    else {"secret": gcp_credentials_secret, "mount_path": gcp_credentials_path}
                ),
                "gcp_project": gcp_project or _pubsub_project(queue),
                "host_path_mounts": host_path_mounts or [],
                "weka_mounts": weka_mounts or [],
                "worker": {
                    "queue": queue,
                    "subscription": subscription,
                    "idle_timeout": idle_timeout if idle_timeout is not None else default_idle_timeout(gpus),
                    "retries": retries,
                    "retry_sleep": retry_sleep,
                    "extra_args": worker_args or [],
                },
            }
        )
    except ValidationError as e:
        raise FleetError(invalid_config(e)) from None
    return launch_config(config, num_workers, dry_run=dry_run)


def launch_config(config: LaunchConfig, num_workers: int, dry_run: bool = False) -> list[str]:
    """Launch (or on ``dry_run`` print) ``num_workers`` workers from a validated config."""
    if dry_run:
        names = worker_names(config.fleet, new_launch_id(), num_workers)
        for name in names:
            print(f"# {summary(config, name)}")
            print(yaml.safe_dump(build_spec(config, name).to_json(), sort_keys=False), end="")
            print("---")
        print(f"dry run: {_workers(len(names))} of fleet {config.fleet}; nothing was sent to Beaker")
        return names
    names = launch_fleet(connect(), config, num_workers)
    for name in names:
        print(f"launched {summary(config, name)}")
    print(f"{_workers(len(names))} of fleet {config.fleet}: `rslp fleet status {config.fleet}` to watch them")
    return names


def status(fleet: str, workspace: str | None = None, active_only: bool = False) -> list[WorkerStatus]:
    """Print a table of fleet FLEET's workers and their latest job's status.

    Args:
        fleet: the fleet name given at launch.
        workspace: Beaker workspace (default: the Beaker config's default workspace).
        active_only: leave out workers that have finished (succeeded, failed or cancelled).
    """
    workers = fleet_status(connect(), workspace, fleet, active_only)
    if not workers:
        print(f"no workers of fleet {fleet}")
        return workers
    print(status_table(workers))
    counts: dict[str, int] = {}
    for worker in workers:
        counts[worker.status] = counts.get(worker.status, 0) + 1
    print(f"{_workers(len(workers))}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return workers


def stop(fleet: str, workspace: str | None = None) -> list[str]:
    """Cancel every running or queued worker of fleet FLEET, and nothing else.

    Tasks in flight are handed back to the queue by the workers as they stop, so no
    work is lost; other fleets whose names merely start the same are left alone.

    Args:
        fleet: the fleet name given at launch.
        workspace: Beaker workspace (default: the Beaker config's default workspace).
    """
    cancelled = stop_fleet(connect(), workspace, fleet)
    for name in cancelled:
        print(f"cancelled {name}")
    print(
        f"{_workers(len(cancelled))} of fleet {fleet} cancelled" if cancelled else f"no active workers of fleet {fleet}"
    )
    return cancelled


def summary(config: LaunchConfig, name: str) -> str:
    """One line per worker: where it runs and with what."""
    parts = [
        name,
        f"image {config.image}",
        f"clusters {','.join(config.clusters)}",
        f"{config.gpus} GPU{'' if config.gpus == 1 else 's'}",
        f"priority {config.priority}",
        "preemptible" if config.preemptible else "not preemptible",
    ]
    if config.shared_memory:
        parts.append(f"shm {config.shared_memory}")
    if config.timeout:
        parts.append(f"timeout {config.timeout}")
    parts.append(f"pulls {config.worker.subscription} on {config.worker.queue}")
    return ", ".join(parts)


def status_table(workers: list[WorkerStatus]) -> str:
    """Workers as aligned columns: name, status, exit code, job id, detail."""
    rows = [("WORKER", "STATUS", "EXIT", "JOB", "DETAIL")]
    rows += [
        (w.name, w.status, "-" if w.exit_code is None else str(w.exit_code), w.job_id or "-", w.detail) for w in workers
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join([*(c.ljust(n) for c, n in zip(row, widths, strict=False)), row[4]]).rstrip() for row in rows
    )


def _pubsub_project(queue: str) -> str | None:
    """The project of a ``pubsub://PROJECT`` queue URL, else None."""
    if not queue.startswith("pubsub://"):
        return None
    return queue.removeprefix("pubsub://") or None


def _workers(n: int) -> str:
    return f"{n} worker" if n == 1 else f"{n} workers"


def invalid_config(error: ValidationError) -> str:
    """A pydantic error as one line: ``invalid launch config: field: reason; ...``."""
    reasons = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "config"
        reasons.append(f"{where}: {item['msg'].removeprefix('Value error, ')}")
    return "invalid launch config: " + "; ".join(reasons)
