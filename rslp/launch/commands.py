"""What a user runs: ``rslp launch``, ``rslp fleet status NAME``, ``rslp fleet stop NAME``.

Plain typed functions, so the CLI can expose them as they are. They print for a
person and return data for a script. Every problem the user can fix (bad config, no
token, unknown workspace, no network) is raised as a one-line
:class:`~rslp.launch.fleet.FleetError`; the CLI prints it and exits non-zero.
A dry run builds and prints the specs and never contacts Beaker, so it needs no token.
beaker-py (and gRPC with it) is imported only where a spec is built or Beaker is called:
``rslp fleet status`` and ``stop`` of a local fleet never load it.
"""

from __future__ import annotations

import yaml

from rslp import hints
from rslp.argv import Flags
from rslp.launch.autoscale import pool_fleet
from rslp.launch.config import LaunchConfig
from rslp.launch.fleet import (
    FleetClient,
    FleetError,
    WorkerStatus,
    fleet_status,
    new_launch_id,
    stop_fleet,
    worker_names,
)
from rslp.launch.pool import Backend, PoolSettings
from rslp.launch.sizing import HANDFUL


def connect() -> FleetClient:
    """The Beaker client the commands use (tests replace this function)."""
    from rslp.launch.beaker import BeakerFleetClient

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
    pool: Flags[PoolSettings],
    subscription: str | None = None,
    num_workers: int | None = None,
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
    The other flags say what the workers are (:class:`~rslp.launch.pool.PoolSettings`).

    Args:
        fleet: fleet name, the prefix of every worker's experiment name.
        pool: the workers' image, resources, mounts and worker flags.
        subscription: the subscription workers pull from (with --deadline: each topic's own).
        num_workers: how many workers to start (or give --job_root and --deadline).
        job_root: the job whose remaining tasks size the pools (with --deadline).
        deadline: finish the job within this long, e.g. 6h: one pool per topic, sized from the
            tasks left and the durations measured in the job's done markers.
        max_workers: at most this many workers per pool (with --deadline; default 20, whatever the job's numbers).
        step_seconds: guessed seconds per task of a step while none is done, e.g. '{"predict": 30}'.
        dry_run: print the specs and contact nothing.

    Returns:
        The names of the workers launched (or that would be, on a dry run).
    """
    if deadline is None:
        if num_workers is None or subscription is None:
            raise FleetError("give --num_workers and --subscription, or --job_root and --deadline to size the pools")
        return launch_config(pool.config(fleet, subscription), num_workers, dry_run, pool.backend)
    if job_root is None:
        raise FleetError("--deadline needs --job_root: the job whose remaining tasks size the pools")
    from rslp.launch.sizing import parse_duration, size_pools

    try:
        time_left = parse_duration(deadline)
    except ValueError as e:
        raise FleetError(f"--deadline: {e}") from None
    pool = for_job(pool, job_root)
    pools = size_pools(job_root, time_left, max_workers, step_seconds)
    for size in pools:
        print(size.line(time_left, max_workers))
    total = sum(size.workers for size in pools)
    print(f"total: {_workers(total)} in {sum(size.workers > 0 for size in pools)} pools of fleet {fleet}")
    names: list[str] = []
    for size in pools:
        if size.workers:
            config = pool.config(pool_fleet(fleet, size.topic), size.topic)
            names += launch_config(config, size.workers, dry_run, pool.backend, announced=True)
    return names


def for_job(pool: PoolSettings, job_root: str) -> PoolSettings:
    """``pool`` for the workers of one job: the job's queue unless --queue names one, and that job only."""
    queue = _job_queue(job_root, pool.queue)
    return pool.model_copy(update={"queue": queue, "job_roots": pool.job_roots or job_root})


def _job_queue(job_root: str, given: str | None) -> str:
    """The queue the job's workers pull: ``--queue``, or the job's own embedded queue (:mod:`rslp.queue.choice`)."""
    from rslp.jobroot import JobRoot
    from rslp.queue.choice import UnnamedQueueError, queue_to_act_on

    try:
        queue = queue_to_act_on(job_root, JobRoot(job_root).read_manifest().queue, given, "rslp launch --job_root")
    except UnnamedQueueError as e:
        raise FleetError(str(e)) from None
    print(f"queue {queue}")
    return queue


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
    from rslp.launch.beaker import build_spec, launch_fleet  # the specs every backend runs

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
    pool: Flags[PoolSettings],
    job_root: str | None = None,
    deadline: str = "24h",
    min_workers: int = 0,
    max_workers: int | None = None,
    interval: float = 60.0,
    cooldown: int = 3,
    step_seconds: dict[str, float] | None = None,
    max_checks: int | None = None,
) -> int:
    """Keep each topic's pool of fleet FLEET sized to JOB_ROOT's work until the job is done.

    Every INTERVAL seconds: per topic, the workers needed to finish the tasks left by
    the deadline (durations measured in the job's done markers), never more than the
    tasks ready; pools grow at once and shrink only after COOLDOWN checks in a row
    (stopping goes through the workers' preemption path: tasks are handed back). When
    the job is done every pool is stopped. Pools are fleets FLEET.TOPIC.
    The worker flags are those of `rslp launch` (the job roots default to JOB_ROOT).

    Args:
        fleet: fleet name; pool TOPIC is the fleet FLEET.TOPIC.
        pool: the workers' image, resources, mounts and worker flags, as `rslp launch` takes them.
        job_root: the job to finish.
        deadline: finish within this long from now, e.g. 6h.
        min_workers: keep at least this many workers per pool while the job has work.
        max_workers: at most this many workers per pool (default 20, whatever the job's numbers).
        interval: seconds between checks.
        cooldown: checks in a row below a pool's size before it shrinks.
        step_seconds: guessed seconds per task of a step while none is done, e.g. '{"predict": 30}'.
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
    pool = for_job(pool, job_root)
    pool.config(pool_fleet(fleet, "check"), "check")  # bad flags fail now, not at the first scale-up
    scaler = Autoscaler(
        client_for(pool.backend),
        fleet,
        job_root,
        lambda topic: pool.config(pool_fleet(fleet, topic), topic),
        deadline_at,
        min_workers=min_workers,
        max_workers=max_workers,
        cooldown=cooldown,
        guesses=step_seconds,
        workspace=pool.workspace,
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


def _workers(n: int) -> str:
    return f"{n} worker" if n == 1 else f"{n} workers"
