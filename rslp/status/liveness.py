"""Which "running" tasks are alive, which are stalled, and which workers hold them.

A running marker is rewritten by its worker every half lease
(:mod:`rslp.worker.heartbeat`), so its modification time, already in status's one
listing per step, is the task's last sign of life. Past two leases without a beat
the task is ``stalled``: its worker died and no other worker has taken the message
yet (with no worker left, it never will). A marker written when a worker handed the
task back on preemption is not running at all: the task is queued again.

Reading the running markers themselves (for the worker id and the lease) costs one
read per running task; that is bounded by the number of workers, not by the job's
size (at most :data:`MAX_READS`; beyond, the listing's time alone decides).
"""

from __future__ import annotations

from dataclasses import dataclass

from rslp.jobroot import JobRoot
from rslp.storage import UnreadableFile, read_json_object

#: Lease assumed for markers that do not record one (written before heartbeats existed).
DEFAULT_LEASE = 60.0
#: At most this many running markers are read per status.
MAX_READS = 2000


@dataclass(frozen=True)
class RunningTask:
    """A task with a running marker: who runs it, how old its last beat is, and whether it stalled."""

    step: str
    task_id: str
    partition: str
    worker: str
    age: float
    lease_seconds: float
    handed_back: bool

    @property
    def stalled(self) -> bool:
        """No beat for two leases: its worker is gone."""
        return not self.handed_back and self.age > 2 * self.lease_seconds


def running_tasks(ledger: JobRoot, step: str, written: dict[str, float | None], now: float) -> list[RunningTask]:
    """The running tasks of ``step`` (task id -> marker's modification time from the listing)."""
    out = []
    for i, (task_id, mtime) in enumerate(written.items()):
        marker: dict[str, object] = {}
        if i < MAX_READS:
            try:
                marker = read_json_object(ledger.marker_path(step, task_id, "running"))
            except (OSError, UnreadableFile):  # replaced by a later marker right now, or not a worker's
                marker = {}
        beat = mtime if mtime is not None else _number(marker.get("heartbeat") or marker.get("time"))
        task = marker.get("task")
        out.append(
            RunningTask(
                step=step,
                task_id=task_id,
                partition=str(task.get("partition") or "") if isinstance(task, dict) else "",
                worker=str(marker.get("worker") or "?"),
                age=max(0.0, now - beat) if beat is not None else 0.0,
                lease_seconds=_number(marker.get("lease_seconds")) or DEFAULT_LEASE,
                handed_back=bool(marker.get("handed_back")),
            )
        )
    return out


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None
