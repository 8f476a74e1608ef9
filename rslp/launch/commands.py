"""What a user runs: ``rslp launch``, ``rslp fleet status NAME``, ``rslp fleet stop NAME``.

Plain typed functions, so the CLI can expose them as they are. They print for a
person and return data for a script. Every problem the user can fix (bad config, no
token, unknown workspace, no network) is raised as a one-line
:class:`~rslp.launch.fleet.FleetError`; the CLI prints it and exits non-zero.
A dry run builds and prints the specs and never contacts Beaker, so it needs no token.
"""

from __future__ import annotations

from typing import Any, Literal

import yaml
from pydantic import ValidationError

from rslp import hints
from rslp.launch.autoscale import pool_fleet
from rslp.launch.beaker import BeakerFleetClient, build_spec, launch_fleet
from rslp.launch.config import DEFAULT_GCP_CREDENTIALS_PATH, DEFAULT_GCP_CREDENTIALS_SECRET, LaunchConfig, Priority
from rslp.launch.fleet import (
    FleetClient,
    FleetError,
    WorkerStatus,
    fleet_status,
    new_launch_id,
    stop_fleet,
    worker_names,
)
from rslp.launch.idle import default_idle_timeout
from rslp.launch.sizing import HANDFUL
from rslp.worker.guard import JOB_ROOTS_ENV

Backend = Literal["beaker", "local"]
"""Where workers run: Beaker experiments, or processes of this machine (:mod:`rslp.launch.local`)."""

#: Stand-ins for the Beaker-only settings of a local launch: a local worker needs neither.
LOCAL_IMAGE = "local"
LOCAL_CLUSTER = "local"


def connect() -> FleetClient:
    """The Beaker client the commands use (tests replace this function)."""
    return BeakerFleetClient.from_env()


def backend_of(fleet: str, backend: Backend | None) -> Backend:
    """``backend`` as given; else local where ``fleet`` was launched on this machine, else beaker."""
    if backend is not None:
        return backend
    from rslp.launch.local import has_fleet

    return "local" if has_fleet(fleet) else "beaker"


def check_queue(config: LaunchConfig) -> None:
    """The queue and each subscription the workers will pull exist (one line naming the fix if not), as a worker checks.

    Run before a local launch starts anything: workers that cannot pull would only exit
    within a second, each after a "launched" line.
    """
    from rslp.queue import open_queue

    with open_queue(config.worker.queue) as q:
        for subscription in config.worker.subscription.split(","):
            q.topic_of(subscription)


def client_for(backend: Backend) -> FleetClient:
    """The fleet client of ``backend``."""
    if backend == "local":
        from rslp.launch.local import LocalFleetClient

        return LocalFleetClient()
    return connect()


def launch(
    fleet: str,
    image: str | None = None,
    queue: str | None = None,
    subscription: str | None = None,
    num_workers: int | None = None,
    clusters: list[str] | None = None,
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
    backend: Backend = "beaker",
    job_root: str | None = None,
    deadline: str | None = None,
    max_workers: int | None = None,
    step_seconds: dict[str, float] | None = None,
    dry_run: bool = False,
) -> list[str]:
    """Launch NUM_WORKERS workers of fleet FLEET on Beaker (or locally), each running `rslp worker`.

    Workers are named FLEET-LAUNCH-wI (LAUNCH is new each time), run at low priority
    and preemptible by default, pull from SUBSCRIPTION on QUEUE (e.g. pubsub://PROJECT)
    and exit when idle for IDLE_TIMEOUT seconds, so a drained fleet stops costing.
    With --job_root and --deadline instead of --num_workers, one pool per topic of the
    job is sized to finish by the deadline (the arithmetic is printed, one line per topic).

    Args:
        fleet: fleet name, the prefix of every worker's experiment name.
        image: Beaker image with rslp installed (see worker.Dockerfile); not needed with --backend local.
        queue: queue URL, e.g. pubsub://PROJECT (with --job_root, needed unless the job's queue is its
            own embedded queue on this machine: a manifest never chooses where workers pull).
        subscription: the subscription workers pull from (with --deadline: each topic's own).
        num_workers: how many workers to start (or give --job_root and --deadline).
        clusters: Beaker clusters a worker may run on, e.g. '["ai2/jupiter"]'; not needed with --backend local.
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
        backend: beaker (experiments on Beaker) or local (worker processes on this machine).
        job_root: the job whose remaining tasks size the pools (with --deadline).
        deadline: finish the job within this long, e.g. 6h: one pool per topic, sized from the
            tasks left and the durations measured in the job's done markers.
        max_workers: at most this many workers per pool (with --deadline; default 20, whatever the job's numbers).
        step_seconds: guessed seconds per task of a step while none is done, e.g. '{"predict": 30}'.
        dry_run: print the specs and contact nothing.

    Returns:
        The names of the workers launched (or that would be, on a dry run).
    """
    settings = pool_settings(locals())
    if deadline is None:
        if num_workers is None or subscription is None:
            raise FleetError("give --num_workers and --subscription, or --job_root and --deadline to size the pools")
        return launch_config(build_config(fleet, subscription, **settings), num_workers, dry_run, backend)
    if job_root is None:
        raise FleetError("--deadline needs --job_root: the job whose remaining tasks size the pools")
    from rslp.launch.sizing import parse_duration, size_pools

    try:
        time_left = parse_duration(deadline)
    except ValueError as e:
        raise FleetError(f"--deadline: {e}") from None
    settings["queue"] = _job_queue(job_root, queue)
    settings["job_roots"] = job_roots or job_root  # a fleet started for a job serves that job only
    pools = size_pools(job_root, time_left, max_workers, step_seconds)
    for pool in pools:
        print(pool.line(time_left, max_workers))
    total = sum(pool.workers for pool in pools)
    print(f"total: {_workers(total)} in {sum(pool.workers > 0 for pool in pools)} pools of fleet {fleet}")
    names: list[str] = []
    for pool in pools:
        if pool.workers:
            config = build_config(pool_fleet(fleet, pool.topic), pool.topic, **settings)
            names += launch_config(config, pool.workers, dry_run, backend, announced=True)
    return names


def _job_queue(job_root: str, given: str | None) -> str:
    """The queue the job's workers pull: ``--queue``, or the job's own embedded queue (:mod:`rslp.queue.choice`)."""
    from rslp.ledger import Ledger
    from rslp.queue.choice import UnnamedQueueError, queue_to_act_on

    try:
        queue = queue_to_act_on(job_root, Ledger(job_root).read_manifest().queue, given, "rslp launch --job_root")
    except UnnamedQueueError as e:
        raise FleetError(str(e)) from None
    print(f"queue {queue}")
    return queue


def pool_settings(values: dict[str, Any]) -> dict[str, Any]:
    """The flags of ``launch`` or ``autoscale`` (their ``locals()``) that :func:`build_config` takes."""
    import inspect

    names = [p.name for p in inspect.signature(build_config).parameters.values() if p.kind == p.KEYWORD_ONLY]
    return {name: values[name] for name in names if name in values}


def build_config(
    fleet: str,
    subscription: str,
    *,
    image: str | None,
    queue: str | None,
    clusters: list[str] | None,
    gcp_credentials_secret: str,
    gcp_credentials_path: str,
    no_gcp_credentials: bool,
    gcp_project: str | None,
    job_roots: str | None,
    idle_timeout: int | None,
    retries: int | None,
    retry_sleep: float | None,
    worker_args: list[str] | None,
    backend: Backend,
    env: dict[str, str] | None,
    secret_env: dict[str, str] | None,
    host_path_mounts: list[str] | None,
    weka_mounts: list[str] | None,
    workspace: str | None,
    budget: str | None,
    gpus: int,
    shared_memory: str | None,
    priority: Priority,
    preemptible: bool,
    timeout: str | None,
) -> LaunchConfig:
    """A validated :class:`LaunchConfig` from ``rslp launch``'s flags (FleetError naming the bad one)."""
    if backend == "local":
        # A local worker uses this machine's own Google credentials: no secret to mount.
        image, clusters, no_gcp_credentials = image or LOCAL_IMAGE, clusters or [LOCAL_CLUSTER], True
    elif not image or not clusters:
        raise FleetError("--image and --clusters are required with the beaker backend (or use --backend local)")
    if queue is None:
        raise FleetError("give --queue (e.g. pubsub://PROJECT), or --job_root to use the job's queue")
    try:
        return LaunchConfig.model_validate(
            {
                "fleet": fleet,
                "image": image,
                "clusters": clusters,
                "workspace": workspace,
                "budget": budget,
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


def launch_config(
    config: LaunchConfig,
    num_workers: int,
    dry_run: bool = False,
    backend: Backend = "beaker",
    announced: bool = False,
) -> list[str]:
    """Launch (or on ``dry_run`` print) ``num_workers`` workers from a validated config.

    More than a handful are announced (their total printed) before the first starts,
    unless the caller printed the total already (``announced``).
    """
    if dry_run:
        names = worker_names(config.fleet, new_launch_id(), num_workers)
        for name in names:
            print(f"# {summary(config, name)}")
            print(yaml.safe_dump(build_spec(config, name).to_json(), sort_keys=False), end="")
            print("---")
        where = "nothing was sent to Beaker" if backend == "beaker" else "nothing was started"
        print(f"dry run: {_workers(len(names))} of fleet {config.fleet}; {where}")
        return names
    if backend == "local":
        check_queue(config)
    if num_workers > HANDFUL and not announced:
        print(f"launching {_workers(num_workers)} of fleet {config.fleet}", flush=True)
    names = launch_fleet(client_for(backend), config, num_workers)
    for name in names:
        print(f"launched {summary(config, name)}")
    watch = hints.command("fleet", "status", config.fleet)
    print(f"{_workers(len(names))} of fleet {config.fleet}:\n  watch them: {watch}")
    return names


def status(
    fleet: str, workspace: str | None = None, active_only: bool = False, backend: Backend | None = None
) -> list[WorkerStatus]:
    """Print a table of fleet FLEET's workers (its autoscaled pools' too) and their latest job's status.

    Args:
        fleet: the fleet name given at launch.
        workspace: Beaker workspace (default: the Beaker config's default workspace).
        active_only: leave out workers that have finished (succeeded, failed or cancelled).
        backend: beaker or local (default: local if the fleet was launched on this machine).
    """
    workers = fleet_status(client_for(backend_of(fleet, backend)), workspace, fleet, active_only)
    if not workers:
        print(f"no workers of fleet {fleet}")
        return workers
    print(status_table(workers))
    counts: dict[str, int] = {}
    for worker in workers:
        counts[worker.status] = counts.get(worker.status, 0) + 1
    print(f"{_workers(len(workers))}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return workers


def stop(fleet: str, workspace: str | None = None, backend: Backend | None = None) -> list[str]:
    """Cancel every running or queued worker of fleet FLEET (and of its pools), and nothing else.

    Tasks in flight are handed back to the queue by the workers as they stop, so no
    work is lost; other fleets whose names merely start the same are left alone.

    Args:
        fleet: the fleet name given at launch.
        workspace: Beaker workspace (default: the Beaker config's default workspace).
        backend: beaker or local (default: local if the fleet was launched on this machine).
    """
    cancelled = stop_fleet(client_for(backend_of(fleet, backend)), workspace, fleet)
    for name in cancelled:
        print(f"cancelled {name}")
    print(
        f"{_workers(len(cancelled))} of fleet {fleet} cancelled" if cancelled else f"no active workers of fleet {fleet}"
    )
    return cancelled


def autoscale(
    fleet: str,
    job_root: str | None = None,
    deadline: str = "24h",
    min_workers: int = 0,
    max_workers: int | None = None,
    interval: float = 60.0,
    cooldown: int = 3,
    step_seconds: dict[str, float] | None = None,
    image: str | None = None,
    queue: str | None = None,
    clusters: list[str] | None = None,
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
    backend: Backend = "beaker",
    max_checks: int | None = None,
) -> int:
    """Keep each topic's pool of fleet FLEET sized to JOB_ROOT's work until the job is done.

    Every INTERVAL seconds: per topic, the workers needed to finish the tasks left by
    the deadline (durations measured in the job's done markers), never more than the
    tasks ready; pools grow at once and shrink only after COOLDOWN checks in a row
    (stopping goes through the workers' preemption path: tasks are handed back). When
    the job is done every pool is stopped. Pools are fleets FLEET.TOPIC.
    The worker flags are those of `rslp launch`.

    Args:
        fleet: fleet name; pool TOPIC is the fleet FLEET.TOPIC.
        job_root: the job to finish.
        deadline: finish within this long from now, e.g. 6h.
        min_workers: keep at least this many workers per pool while the job has work.
        max_workers: at most this many workers per pool (default 20, whatever the job's numbers).
        interval: seconds between checks.
        cooldown: checks in a row below a pool's size before it shrinks.
        step_seconds: guessed seconds per task of a step while none is done, e.g. '{"predict": 30}'.
        image: Beaker image with rslp installed; not needed with --backend local.
        queue: queue URL (needed unless the job's queue is its own embedded queue on this machine).
        clusters: Beaker clusters; not needed with --backend local.
        workspace: Beaker workspace.
        budget: Beaker budget.
        gpus: GPUs per worker.
        shared_memory: shared memory per worker, e.g. 256GiB.
        priority: Beaker priority.
        preemptible: allow preemption.
        timeout: maximum runtime of a worker, e.g. 24h.
        env: environment variables.
        secret_env: env var name -> Beaker secret name.
        gcp_credentials_secret: Beaker secret holding a GCP service-account key (default RSLEARN_GCP_CREDENTIALS).
        gcp_credentials_path: where that key is mounted.
        no_gcp_credentials: mount no GCP credentials.
        gcp_project: GOOGLE_CLOUD_PROJECT in every worker (default: the project of a pubsub:// queue).
        host_path_mounts: node directories to mount, each HOST_PATH:MOUNT_PATH.
        weka_mounts: Weka buckets to mount, each BUCKET:MOUNT_PATH.
        idle_timeout: seconds without a task before a worker exits.
        retries: consecutive task failures before a worker exits.
        retry_sleep: seconds a worker waits after a failed task.
        worker_args: more arguments appended to the worker command.
        job_roots: the job roots the workers accept (default: JOB_ROOT).
        backend: beaker or local.
        max_checks: stop after this many checks even if the job is not done (for tests and cron).

    Returns:
        The number of checks made.
    """
    import time

    from rslp.launch.autoscale import Autoscaler
    from rslp.launch.sizing import parse_duration

    if job_root is None:
        raise FleetError("give --job_root: the job whose work sizes the pools")

    try:
        deadline_at = time.time() + parse_duration(deadline)
    except ValueError as e:
        raise FleetError(f"--deadline: {e}") from None
    settings = pool_settings(locals())
    settings["queue"] = _job_queue(job_root, queue)
    settings["job_roots"] = job_roots or job_root  # a fleet started for a job serves that job only
    build_config(pool_fleet(fleet, "check"), "check", **settings)  # bad flags fail now, not at the first scale-up
    scaler = Autoscaler(
        client_for(backend),
        fleet,
        job_root,
        lambda topic: build_config(pool_fleet(fleet, topic), topic, **settings),
        deadline_at,
        min_workers=min_workers,
        max_workers=max_workers,
        cooldown=cooldown,
        guesses=step_seconds,
        workspace=workspace,
    )
    return scaler.run(interval, max_checks)


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
