"""Fleets on Beaker: experiment specs, the real client, and launching.

Each worker of a fleet (named as :mod:`rslp.launch.fleet` says) is one Beaker
experiment with one task that runs ``rslp worker``.

- :func:`build_spec` is pure: config + worker name in, ``BeakerExperimentSpec`` out.
  Specs are always built in code, never loaded from YAML (that path corrupts
  host-path mounts in beaker-py 2.8). The local backend runs these very specs.
- :class:`BeakerFleetClient` is the real :class:`~rslp.launch.fleet.FleetClient`.
  Every call runs under a deadline, because beaker-py retries an unreachable server
  forever, and every failure becomes a one-line :class:`FleetError` that never
  contains the token.
- :func:`launch_fleet` builds every spec, then creates the experiments through the seam.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

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

from rslp.errors import one_line
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
from rslp.launch.fleet import (
    FleetClient,
    FleetError,
    FleetTimeoutError,
    FleetWorkload,
    JobState,
    new_launch_id,
    parse_worker_name,
    worker_names,
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
        return FleetError(f"{what}: Beaker {kind} not found: {one_line(error)}")
    if isinstance(error, BeakerNameConflictError):
        return FleetError(f"{what}: a Beaker experiment with that name already exists: {one_line(error)}")
    if isinstance(error, BeakerPermissionsError):
        return FleetError(f"{what}: Beaker denied permission: {one_line(error)}")
    if isinstance(error, BeakerError):
        return FleetError(f"{what}: Beaker error: {one_line(error)}")
    if isinstance(error, RequestException):
        return FleetError(f"{what}: cannot reach Beaker ({type(error).__name__}); check the network and BEAKER_ADDR")
    if isinstance(error, grpc.RpcError) and isinstance(error, grpc.Call):
        return FleetError(f"{what}: Beaker call failed: {error.code().name}: {one_line(error.details() or '')}")
    return error


def _is_unauthenticated(error: BaseException) -> bool:
    """A bad token: a raw gRPC UNAUTHENTICATED, or HTTP 401 from the REST endpoint that creates experiments."""
    if isinstance(error, grpc.RpcError) and isinstance(error, grpc.Call):
        return bool(error.code() == grpc.StatusCode.UNAUTHENTICATED)
    if isinstance(error, HTTPError) and error.response is not None:
        return error.response.status_code == 401
    return isinstance(error, BeakerError) and str(error).startswith("[code=401]")


# Operations ----------------------------------------------------------------------


# Operations ----------------------------------------------------------------------


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
