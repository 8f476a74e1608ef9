"""A fleet, whatever runs it: worker names, the backend seam, and the operations written against it.

A fleet is the set of workers named ``{fleet}-{launch}-w{i}``: ``launch`` is a short
id per launch (time-ordered, so two launches of one fleet never collide), ``i`` the
worker's index. :class:`FleetClient` is the seam: the five calls a fleet needs.
:class:`~rslp.launch.beaker.BeakerFleetClient` makes them on Beaker,
:class:`~rslp.launch.local.LocalFleetClient` with processes of this machine, and tests
with a fake. Status and stop are written here against the seam.

This module never imports beaker-py (the spec type is named for type checkers only),
so the local backend, the CLI's error handling and ``rslp fleet status`` of a local
fleet start without it.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from rslp.errors import RslpError

if TYPE_CHECKING:
    from beaker import BeakerExperimentSpec


class FleetError(RslpError):
    """A fleet operation failed for a reason the user can act on; the message is one line."""


class FleetTimeoutError(FleetError):
    """A Beaker call did not finish within its deadline (no network, or Beaker is down)."""


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


def worker_names(fleet: str, launch_id: str, num_workers: int) -> list[str]:
    """The names of one launch's workers, ``w0`` to ``w{num_workers-1}``."""
    if num_workers < 1:
        raise FleetError(f"num_workers must be at least 1, got {num_workers}")
    return [worker_name(fleet, launch_id, i) for i in range(num_workers)]


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


# Operations ----------------------------------------------------------------------


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
