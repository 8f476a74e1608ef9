"""Fleets on Beaker: experiment specs, worker names, and one thin client.

A fleet is the set of Beaker experiments named ``{fleet}-{launch}-w{i}``: ``launch``
is a short id per launch (time-ordered, so two launches of one fleet never collide),
``i`` the worker's index. Each experiment has one task that runs ``rslp worker``.

Three layers, each testable alone:

- :func:`build_spec` is pure: config + worker name in, ``BeakerExperimentSpec`` out.
  Specs are always built in code, never loaded from YAML (that path corrupts
  host-path mounts in beaker-py 2.8).
- :class:`FleetClient` is the seam: the five Beaker calls a fleet needs. Tests use a
  fake; :class:`BeakerFleetClient` is the real one. Every real call runs under a
  deadline, because beaker-py retries an unreachable server forever, and every
  failure becomes a one-line :class:`FleetError` that never contains the token.
- :func:`launch_fleet`, :func:`fleet_status`, :func:`stop_fleet` are the operations,
  written against the seam.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeVar

import grpc
from beaker import (
    Beaker,
    BeakerConstraints,
    BeakerDataMount,
    BeakerDataSource,
    BeakerEnvVar,
    BeakerExperimentSpec,
    BeakerTaskResources,
    BeakerWorkloadType,
)
from beaker import beaker_pb2 as pb2
from beaker.exceptions import (
    BeakerConfigurationError,
    BeakerError,
    BeakerNameConflictError,
    BeakerNotFoundError,
    BeakerPermissionsError,
    BeakerWorkspaceNotSet,
)
from requests.exceptions import HTTPError, RequestException

from rslp.launch import FleetError, FleetTimeoutError
from rslp.launch.config import (
    FLEET_ENV,
    GCP_CREDENTIALS_ENV,
    GCP_PROJECT_ENV,
    LAUNCH_ID_ENV,
    WORKER_NAME_ENV,
    GcpCredentials,
    HostPathMount,
    LaunchConfig,
    Mount,
    WekaMount,
)

T = TypeVar("T")

DEFAULT_CALL_TIMEOUT = 60.0
"""Seconds one Beaker call may take before rslp gives up on it."""

TASK_NAME = "worker"

NO_TOKEN = "no Beaker token: set BEAKER_TOKEN or run `beaker account login`"
BAD_TOKEN = "Beaker rejected the token (unauthenticated): check BEAKER_TOKEN or run `beaker account login`"
NO_WORKSPACE = (
    "no Beaker workspace: pass --workspace ORG/NAME or set one with `beaker config set default_workspace ORG/NAME`"
)


# Names ---------------------------------------------------------------------------

_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_launch_id(now: float | None = None) -> str:
    """A short id that sorts by launch time: base-36 seconds (6 chars until 2059) + 2 random hex."""
    seconds = int(time.time() if now is None else now)
    digits = ""
    while seconds:
        seconds, rest = divmod(seconds, 36)
        digits = _BASE36[rest] + digits
    return (digits or "0") + secrets.token_hex(1)


def worker_name(fleet: str, launch_id: str, index: int) -> str:
    """The Beaker experiment name of worker ``index`` of one launch of ``fleet``."""
    return f"{fleet}-{launch_id}-w{index}"


def parse_worker_name(fleet: str, name: str) -> tuple[str, int] | None:
    """``(launch_id, index)`` if ``name`` is a worker of ``fleet``, else None.

    Beaker lists by substring, so ``fleet`` "a" would also see fleet "a-b"'s workers;
    launch ids contain no dash, which makes this check exact. The workers of
    ``fleet``'s autoscaled pools (fleet ``a.POOL``, see :mod:`rslp.launch.autoscale`)
    belong to it too, so status and stop of ``a`` cover its pools.
    """
    match = re.fullmatch(rf"{re.escape(fleet)}(?:\.[A-Za-z0-9_-]+)?-([0-9a-z]+)-w(\d+)", name)
    return (match.group(1), int(match.group(2))) if match else None


# The spec ------------------------------------------------------------------------


def build_spec(config: LaunchConfig, worker_name: str) -> BeakerExperimentSpec:
    """The experiment spec of one worker; pure, so a dry run and the tests need no Beaker.

    The worker's name goes into its environment (``RSLP_WORKER_NAME``) and its
    ``--worker_id``, because Beaker injects ids but not the experiment name.
    Preemptible means ``min_runtime="0s"`` and ``auto_resume=True`` (beaker-py 2.8
    deprecates ``preemptible=``): a preempted worker comes back and pulls again.
    """
    parsed = parse_worker_name(config.fleet, worker_name)
    if parsed is None:
        raise ValueError(f"{worker_name!r} is not a worker name of fleet {config.fleet!r}")
    launch_id, _ = parsed
    env_vars = [
        BeakerEnvVar(name=FLEET_ENV, value=config.fleet),
        BeakerEnvVar(name=WORKER_NAME_ENV, value=worker_name),
        BeakerEnvVar(name=LAUNCH_ID_ENV, value=launch_id),
    ]
    if config.gcp_credentials is not None:
        env_vars.append(BeakerEnvVar(name=GCP_CREDENTIALS_ENV, value=config.gcp_credentials.mount_path))
    if config.gcp_project is not None:
        env_vars.append(BeakerEnvVar(name=GCP_PROJECT_ENV, value=config.gcp_project))
    env_vars += [BeakerEnvVar(name=name, value=value) for name, value in config.env.items()]
    env_vars += [BeakerEnvVar(name=name, secret=secret) for name, secret in config.secret_env.items()]
    datasets = [_data_mount(mount) for mount in config.mounts()]
    return BeakerExperimentSpec.new(
        budget=config.budget,
        task_name=TASK_NAME,
        description=f"rslp fleet {config.fleet}: pulls {config.worker.subscription} on {config.worker.queue}",
        beaker_image=config.image,
        priority=config.priority,
        constraints=BeakerConstraints(cluster=list(config.clusters)),
        command=config.worker.command(worker_name),
        env_vars=env_vars,
        datasets=datasets or None,
        resources=BeakerTaskResources(gpu_count=config.gpus, shared_memory=config.shared_memory),
        timeout=config.timeout,
        min_runtime="0s" if config.preemptible else None,
        auto_resume=True if config.preemptible else None,
    )


def _data_mount(mount: Mount) -> BeakerDataMount:
    match mount:
        case GcpCredentials(secret=secret):
            source = BeakerDataSource(secret=secret)
        case HostPathMount(host_path=host_path):
            source = BeakerDataSource(host_path=host_path)
        case WekaMount(bucket=bucket):
            source = BeakerDataSource(weka=bucket)
        case _:
            raise TypeError(f"unknown mount {mount!r}")
    return BeakerDataMount(source=source, mount_path=mount.mount_path)


# The seam ------------------------------------------------------------------------


@dataclass(frozen=True)
class FleetWorkload:
    """One listed Beaker experiment: its id, name and workload status (e.g. ``running``)."""

    id: str
    name: str
    status: str


@dataclass(frozen=True)
class JobState:
    """The latest job of a worker: what ``rslp fleet status`` shows per worker."""

    job_id: str
    status: str
    exit_code: int | None
    detail: str


@dataclass(frozen=True)
class WorkerStatus:
    """A worker of a fleet as ``rslp fleet status`` reports it."""

    name: str
    workload_id: str
    status: str
    job_id: str | None
    exit_code: int | None
    detail: str


class FleetClient(Protocol):
    """The Beaker calls a fleet needs, and nothing more; ``workspace=None`` means Beaker's default."""

    def check_target(self, workspace: str | None, clusters: list[str]) -> None:
        """Raise FleetError naming the workspace or cluster that does not exist."""

    def create_experiment(self, workspace: str | None, name: str, spec: BeakerExperimentSpec) -> str:
        """Create one experiment; returns its id."""

    def list_workloads(self, workspace: str | None, name_contains: str, active_only: bool) -> list[FleetWorkload]:
        """Experiments whose name or description contains ``name_contains`` (a substring match)."""

    def latest_job(self, workload_id: str) -> JobState | None:
        """The latest job of a listed workload, or None before Beaker has made one."""

    def cancel(self, workload_ids: list[str]) -> list[str]:
        """Cancel listed workloads; returns the ids Beaker reports cancelled."""


class BeakerFleetClient:
    """:class:`FleetClient` on beaker-py 2.8: each call bounded by ``timeout`` seconds.

    A call runs in a daemon thread that the caller waits on with a deadline. Past
    it the caller gets :class:`FleetTimeoutError`; the thread is abandoned (it may go
    on retrying in the background until the process exits).
    """

    def __init__(self, beaker: Beaker, timeout: float = DEFAULT_CALL_TIMEOUT) -> None:
        """Wrap a configured ``Beaker``; :meth:`from_env` is the usual way in."""
        self.beaker = beaker
        self.timeout = timeout
        self._workspaces: dict[str | None, pb2.Workspace] = {}
        # Workloads already listed or fetched, so status and stop do not fetch each again.
        self._workloads: dict[str, pb2.Workload] = {}

    @classmethod
    def from_env(cls, timeout: float = DEFAULT_CALL_TIMEOUT) -> BeakerFleetClient:
        """Connect with ``BEAKER_TOKEN`` or the Beaker config file; FleetError if there is no token."""
        try:
            # No upgrade check: it is a network call to PyPI on every launch.
            beaker = Beaker.from_env(check_for_upgrades=False)
        except BeakerConfigurationError:
            raise FleetError(NO_TOKEN) from None
        return cls(beaker, timeout)

    def check_target(self, workspace: str | None, clusters: list[str]) -> None:
        """Resolve the workspace and every cluster, so a typo fails before any worker exists.

        Cluster patterns (``ai2/*-cirrascale``) are left to Beaker: they name no single cluster.
        """
        self._workspace(workspace)
        for cluster in (c for c in clusters if "*" not in c):
            self._call(f"checking cluster {cluster}", partial(self.beaker.cluster.get, cluster))

    def create_experiment(self, workspace: str | None, name: str, spec: BeakerExperimentSpec) -> str:
        """Create experiment ``name`` from ``spec``; returns its id."""
        create = partial(self.beaker.experiment.create, name=name, spec=spec, workspace=self._workspace(workspace))
        workload = self._call(f"creating worker {name}", create)
        return str(workload.experiment.id)

    def list_workloads(self, workspace: str | None, name_contains: str, active_only: bool) -> list[FleetWorkload]:
        """List experiments by name substring; ``active_only`` leaves out finalized ones."""
        ws = self._workspace(workspace)

        def fetch() -> list[pb2.Workload]:
            return list(
                self.beaker.workload.list(
                    workspace=ws,
                    name_or_description=name_contains,
                    finalized=False if active_only else None,
                    workload_type=BeakerWorkloadType.experiment,
                )
            )

        workloads = self._call(f"listing workers named {name_contains}*", fetch)
        self._workloads.update({w.experiment.id: w for w in workloads})
        return [FleetWorkload(w.experiment.id, w.experiment.name, _status_name(w.status)) for w in workloads]

    def latest_job(self, workload_id: str) -> JobState | None:
        """The latest job of a workload, with its status, exit code and why it was cancelled."""
        workload = self._workload(workload_id)
        job = self._call(f"reading the job of {workload_id}", partial(self.beaker.workload.get_latest_job, workload))
        if job is None:
            return None
        status = job.status
        detail = [status.message, status.canceled_for]
        if status.HasField("canceled_code"):
            detail.insert(0, pb2.CancelationCode.Name(status.canceled_code).removeprefix("CANCELATION_CODE_").lower())
        return JobState(
            job_id=job.id,
            status=_status_name(status.status),
            exit_code=status.exit_code if status.HasField("exit_code") else None,
            detail="; ".join(d for d in detail if d),
        )

    def cancel(self, workload_ids: list[str]) -> list[str]:
        """Cancel workloads by id; returns what Beaker reports cancelled."""
        workloads = [self._workload(i) for i in workload_ids]
        cancel = partial(self.beaker.workload.cancel, *workloads)
        return list(self._call(f"cancelling {len(workloads)} workers", lambda: list(cancel())))

    def _workspace(self, workspace: str | None) -> pb2.Workspace:
        if workspace not in self._workspaces:
            what = f"checking workspace {workspace}" if workspace else "finding the default workspace"
            self._workspaces[workspace] = self._call(what, partial(self.beaker.workspace.get, workspace))
        return self._workspaces[workspace]

    def _workload(self, workload_id: str) -> pb2.Workload:
        if workload_id not in self._workloads:
            get = partial(self.beaker.workload.get, workload_id)
            self._workloads[workload_id] = self._call(f"reading workload {workload_id}", get)
        return self._workloads[workload_id]

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` with a deadline and turn Beaker's errors into one-line FleetErrors."""
        outcome: list[tuple[bool, Any]] = []

        def run() -> None:
            try:
                outcome.append((True, fn()))
            except BaseException as e:  # noqa: BLE001 -- handed to the caller's thread and raised there
                outcome.append((False, e))

        thread = threading.Thread(target=run, name=f"beaker: {what}", daemon=True)
        thread.start()
        thread.join(self.timeout)
        if not outcome:
            raise FleetTimeoutError(
                f"{what}: Beaker did not answer within {self.timeout:g}s; check the network and "
                "BEAKER_ADDR (beaker-py retries an unreachable server forever, so rslp gives up)"
            )
        ok, value = outcome[0]
        if ok:
            return value
        error = explain(what, value)
        if error is value:
            raise value
        raise error from value


def _status_name(status: int) -> str:
    return pb2.WorkloadStatus.Name(status).removeprefix("STATUS_").lower()


def explain(what: str, error: BaseException) -> BaseException:
    """A one-line FleetError for what Beaker or the network said; other errors pass through.

    Messages name the workspace, cluster or experiment at fault and never the token.
    """
    if _is_unauthenticated(error):
        return FleetError(BAD_TOKEN)
    if isinstance(error, BeakerWorkspaceNotSet):
        return FleetError(NO_WORKSPACE)
    if isinstance(error, BeakerNotFoundError):
        kind = re.sub(r"^Beaker|NotFound(Error)?$", "", type(error).__name__).lower() or "resource"
        return FleetError(f"{what}: Beaker {kind} not found: {_one_line(error)}")
    if isinstance(error, BeakerNameConflictError):
        return FleetError(f"{what}: a Beaker experiment with that name already exists: {_one_line(error)}")
    if isinstance(error, BeakerPermissionsError):
        return FleetError(f"{what}: Beaker denied permission: {_one_line(error)}")
    if isinstance(error, BeakerError):
        return FleetError(f"{what}: Beaker error: {_one_line(error)}")
    if isinstance(error, RequestException):
        return FleetError(f"{what}: cannot reach Beaker ({type(error).__name__}); check the network and BEAKER_ADDR")
    if isinstance(error, grpc.RpcError) and isinstance(error, grpc.Call):
        return FleetError(f"{what}: Beaker call failed: {error.code().name}: {_one_line(error.details() or '')}")
    return error


def _is_unauthenticated(error: BaseException) -> bool:
    """A bad token: a raw gRPC UNAUTHENTICATED, or HTTP 401 from the REST endpoint that creates experiments."""
    if isinstance(error, grpc.RpcError) and isinstance(error, grpc.Call):
        return bool(error.code() == grpc.StatusCode.UNAUTHENTICATED)
    if isinstance(error, HTTPError) and error.response is not None:
        return error.response.status_code == 401
    return isinstance(error, BeakerError) and str(error).startswith("[code=401]")


def _one_line(value: object) -> str:
    return " ".join(str(value).split()) or type(value).__name__


# Operations ----------------------------------------------------------------------


def worker_names(fleet: str, launch_id: str, num_workers: int) -> list[str]:
    """The names of one launch's workers, ``w0`` to ``w{num_workers-1}``."""
    if num_workers < 1:
        raise FleetError(f"num_workers must be at least 1, got {num_workers}")
    return [worker_name(fleet, launch_id, i) for i in range(num_workers)]


def launch_fleet(
    client: FleetClient, config: LaunchConfig, num_workers: int, launch_id: str | None = None
) -> list[str]:
    """Create ``num_workers`` workers of ``config.fleet``; returns their names.

    All specs are built and the workspace and clusters checked before the first
    experiment is created, so a bad config leaves no half-launched fleet. If Beaker
    fails midway, the error says how many workers exist and how to stop them.
    """
    names = worker_names(config.fleet, launch_id or new_launch_id(), num_workers)
    specs = [build_spec(config, name) for name in names]
    client.check_target(config.workspace, list(config.clusters))
    created: list[str] = []
    for name, spec in zip(names, specs, strict=True):
        try:
            client.create_experiment(config.workspace, name, spec)
        except FleetError as e:
            if not created:
                raise
            raise FleetError(
                f"{e} ({len(created)} of {num_workers} workers were created before this; "
                f"`rslp fleet stop {config.fleet}` stops them)"
            ) from e
        created.append(name)
    return created


def fleet_workloads(
    client: FleetClient, workspace: str | None, fleet: str, active_only: bool = False
) -> list[FleetWorkload]:
    """The fleet's experiments, oldest launch first, by worker index within a launch."""
    listed = client.list_workloads(workspace, fleet, active_only)
    mine = [(parsed, w) for w in listed if (parsed := parse_worker_name(fleet, w.name)) is not None]
    return [w for _, w in sorted(mine, key=lambda pair: pair[0])]


def fleet_status(
    client: FleetClient, workspace: str | None, fleet: str, active_only: bool = False
) -> list[WorkerStatus]:
    """Every worker of ``fleet`` with its latest job's status (the workload's before a job exists)."""
    statuses = []
    for workload in fleet_workloads(client, workspace, fleet, active_only):
        job = client.latest_job(workload.id)
        statuses.append(
            WorkerStatus(
                name=workload.name,
                workload_id=workload.id,
                status=job.status if job else workload.status,
                job_id=job.job_id if job else None,
                exit_code=job.exit_code if job else None,
                detail=job.detail if job else "",
            )
        )
    return statuses


def stop_fleet(client: FleetClient, workspace: str | None, fleet: str) -> list[str]:
    """Cancel every active worker of ``fleet`` (and nothing else); returns the names cancelled."""
    workloads = fleet_workloads(client, workspace, fleet, active_only=True)
    if not workloads:
        return []
    cancelled = set(client.cancel([w.id for w in workloads]))
    return [w.name for w in workloads if w.id in cancelled]
