"""A fleet on this machine: the :class:`~rslp.launch.fleet.FleetClient` seam, run locally.

``rslp launch --backend local`` builds the very Beaker spec a Beaker launch would and
hands it to :class:`LocalFleetClient`, which runs the spec's command and plain
environment variables as a process of this machine instead of a container. So every
fleet command (launch, status, stop, autoscale) runs for real here, through the same
code as on Beaker; what cannot exist locally (images, clusters, secrets, mounts) is
ignored, and the worker's flags are exactly those Beaker would pass.

Each worker runs under a small supervisor (:func:`supervise`, ``python -m
rslp.launch.local``) that records the worker's exit code, because the command that
launched it returns at once (as a Beaker launch does) and cannot wait for it. State
lives in one JSON file per worker under :func:`fleet_dir`; stopping a worker sends
SIGTERM to its supervisor, which passes it on: the worker's preemption path hands its
task back, exactly as a Beaker cancellation does.

A record's pid outlives its process: once the supervisor is gone the kernel may give
the number to any other process. So each record also holds the supervisor's start
time (``/proc/PID/stat``, clock ticks since boot, fixed for a process's life), and a
pid counts as the worker's, for status and for signals, only while the process behind
it started at that very time. A record without one (or a system without ``/proc``)
proves nothing: its worker is taken as gone and never signalled.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rslp.launch.fleet import FleetError, FleetWorkload, JobState, fleet_workloads
from rslp.storage import write_json_atomic

if TYPE_CHECKING:
    from beaker import BeakerExperimentSpec

#: Overrides where local fleets keep their state (tests point it at a temporary folder).
FLEET_DIR_ENV = "RSLP_FLEET_DIR"


def fleet_dir() -> Path:
    """Where local workers' state files and logs live (private to this user: 0700)."""
    root = Path(os.environ.get(FLEET_DIR_ENV) or Path.home() / ".cache" / "rslp" / "fleets")
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return root


def _command(spec: BeakerExperimentSpec) -> tuple[list[str], dict[str, str]]:
    """The worker command and plain env vars of a spec's one task, runnable here.

    The image's ``rslp`` console script becomes this interpreter's ``-m rslp.cli``, so
    the local worker runs the same code as the command that launched it.
    """
    task = spec.tasks[0]
    command = list(task.command or []) + list(task.arguments or [])
    if command[:1] == ["rslp"]:
        command = [sys.executable, "-m", "rslp.cli", *command[1:]]
    env = {e.name: e.value for e in task.env_vars or [] if e.value is not None}
    return command, env


class LocalFleetClient:
    """:class:`FleetClient` whose workers are processes of this machine."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or fleet_dir()

    def check_target(self, workspace: str | None, clusters: list[str]) -> None:
        """Nothing to check: this machine is the only cluster."""

    def create_experiment(self, workspace: str | None, name: str, spec: BeakerExperimentSpec) -> str:
        """Start the spec's worker command under a supervisor; returns the worker's id."""
        command, env = _command(spec)
        workload_id = f"local-{uuid.uuid4().hex[:12]}"
        state = self.root / f"{workload_id}.json"
        log = self.root / f"{workload_id}.log"
        record = {"id": workload_id, "name": name, "command": command, "log": str(log), "started": time.time()}
        state.write_text(json.dumps(record))
        with open(log, "ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "rslp.launch.local", str(state)],
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # the launching shell's Ctrl-C must not stop the fleet
            )
        record["pid"] = process.pid
        record["pid_start"] = start_time(process.pid)
        write_json_atomic(state, record)
        return workload_id

    def list_workloads(self, workspace: str | None, name_contains: str, active_only: bool) -> list[FleetWorkload]:
        """Workers whose name contains ``name_contains``; ``active_only`` leaves out finished ones."""
        out = []
        for record in self._records():
            if name_contains not in record["name"]:
                continue
            status = _status(record)
            if active_only and status != "running":
                continue
            out.append(FleetWorkload(record["id"], record["name"], status))
        return out

    def latest_job(self, workload_id: str) -> JobState | None:
        """The worker's process: running, or finished with its exit code; the log is the detail."""
        record = self._record(workload_id)
        pid, status = record.get("pid", "?"), _status(record)
        detail = record["log"]
        if status == "failed" and (line := last_line(Path(record["log"]))):
            detail = f"{line}  (log: {detail})"  # why it failed, where a user looks first
        return JobState(job_id=f"pid {pid}", status=status, exit_code=record.get("exit_code"), detail=detail)

    def cancel(self, workload_ids: list[str]) -> list[str]:
        """SIGTERM each running worker (its preemption path hands its task back); returns those signalled."""
        cancelled = []
        for workload_id in workload_ids:
            record = self._record(workload_id)
            if _status(record) != "running":  # not running, or its pid is another process's now
                continue
            try:
                os.kill(int(record["pid"]), signal.SIGTERM)
            except ProcessLookupError:
                continue
            cancelled.append(workload_id)
        return cancelled

    def _records(self) -> list[dict[str, Any]]:
        records = []
        for path in sorted(self.root.glob("local-*.json")):
            try:
                records.append(json.loads(path.read_text()))
            except (OSError, ValueError):  # being written right now
                continue
        return records

    def _record(self, workload_id: str) -> dict[str, Any]:
        path = self.root / f"{workload_id}.json"
        try:
            return json.loads(path.read_text())  # type: ignore[no-any-return]
        except FileNotFoundError:
            raise FleetError(f"no local worker {workload_id} (state files live in {self.root})") from None


#: How much of a failed worker's log is read for its last line.
LOG_TAIL_BYTES = 8192


def last_line(log: Path) -> str:
    """The last non-empty line of ``log`` (a worker's one-line error is its last word), control characters escaped."""
    from rslp.console import printable

    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - LOG_TAIL_BYTES))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    return next((printable(line.strip())[:300] for line in reversed(lines) if line.strip()), "")


def has_fleet(fleet: str) -> bool:
    """Whether ``fleet`` has workers launched on this machine (so its commands need no ``--backend local``)."""
    return bool(fleet_workloads(LocalFleetClient(), None, fleet, active_only=False))


def _status(record: dict[str, Any]) -> str:
    """``running`` while the supervisor lives; then ``succeeded`` or ``failed`` by exit code."""
    if "exit_code" in record:
        return "succeeded" if record["exit_code"] == 0 else "failed"
    pid = record.get("pid")
    if pid is None:
        return "starting"
    if not isinstance(pid, int) or start_time(pid) is None or start_time(pid) != record.get("pid_start"):
        return "failed"  # gone without recording an exit (killed outright); its pid may be another's now
    return "running"


def start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), or None if there is no such process here."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22; the command name (field 2, in parentheses) may hold spaces and ')'.
    return int(stat.rsplit(")", 1)[1].split()[19])


def supervise(state_file: str) -> int:
    """Run the worker recorded in ``state_file``, pass SIGTERM/SIGINT on, record its exit code."""
    path = Path(state_file)
    record = json.loads(path.read_text())
    process = subprocess.Popen(record["command"])

    def forward(signum: int, _frame: object) -> None:
        process.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = process.wait()
    record = json.loads(path.read_text())
    record.update(exit_code=code, finished=time.time())
    write_json_atomic(path, record)
    return code


if __name__ == "__main__":
    sys.exit(supervise(sys.argv[1]))
