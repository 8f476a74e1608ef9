"""The read model of ``rslp status``: where a job stands, read from its markers and its queue, as data.

Every task (one step of one partition, or one per-job step) is in one state:

- ``done``, ``dead``, ``failed``, ``running``: the most final marker it has, ranked as
  the ledger ranks them. A running task whose marker has had no heartbeat for two
  leases is ``stalled`` (its worker died; :mod:`rslp.status.liveness`); one handed back
  on preemption is ``queued``. ``failed`` means it failed at least once and will be retried;
  ``dead`` means dead-lettered: it runs again only after ``rslp dlq replay``.
- ``queued``: no marker, and it can run now: it is its partition's first step, or the
  step before it is done (for a per-job step: every partition is done). Its message is
  on the queue, or was lost (status says so when the queue is empty).
- ``blocked``: no marker, and a step before it is dead: it cannot start until that one
  is replayed.
- ``waiting``: no marker, and a step before it is still to do: not reached yet, and
  no message exists for it yet.

Cost: one listing per step (names and modification times), plus reading the failed
and dead markers for their reasons (at most :data:`MAX_REASON_READS`). Throughput
comes from the listed modification times of done markers, which is when the worker
wrote them: reading each marker's ``time`` field would be one read per task. Above
:data:`RATE_SAMPLE` tasks a step, an even sample of those times stands for the rest
(on local disk each time is a stat). 100k partitions with 600k markers: about 5 s.

Shown by :mod:`rslp.status.render`, printed by :mod:`rslp.status.command`, served by
``rslp dashboard``. This module only reads; it never writes a marker or touches a message.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from upath import UPath

from rslp.jobroot import JOB_PARTITION, JobManifest, JobRoot, keep_most_final, parse_marker_name
from rslp.jobroot.plan import check_partition_count
from rslp.status.liveness import RunningTask, running_tasks
from rslp.status.queue_view import Backlog, queue_view
from rslp.storage import UnreadableFile, listing, read_json_object
from rslp.task import task_id_for

#: Columns of the step table, in the order a task moves through them.
TASK_STATES = ("waiting", "blocked", "queued", "running", "stalled", "failed", "dead", "done")
#: States in which a task still needs a worker (the job is not over while any remain).
ACTIVE = ("waiting", "queued", "running", "stalled", "failed")
#: Throughput is measured over done markers written in this many recent seconds.
RATE_WINDOW = 600.0
#: Above this many tasks in a step, throughput comes from the times of an even sample of its done markers.
RATE_SAMPLE = 5000
#: At most this many failed/dead markers are read for failure reasons.
MAX_REASON_READS = 1000


@dataclass
class StepStatus:
    """One step's tasks by state, and how fast they finish (tasks a minute, recent)."""

    step: str
    topic: str
    counts: dict[str, int]
    rate: float | None
    #: When done markers were written (an even sample above :data:`RATE_SAMPLE`, each standing for
    #: ``done_weight`` markers): throughput over time, for ``rslp dashboard``.
    done_times: list[float] = field(default_factory=list, repr=False)
    done_weight: float = 1.0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def remaining(self) -> int:
        """Tasks that will still run: everything but done, dead and blocked."""
        return sum(self.counts[s] for s in ACTIVE)

    @property
    def eta_seconds(self) -> float | None:
        if self.remaining == 0:
            return 0.0
        return self.remaining / self.rate * 60 if self.rate else None


@dataclass
class FailureGroup:
    """Failed or dead tasks of one step whose reasons differ only in numbers."""

    count: int
    state: str
    step: str
    kind: str
    reason: str
    example: str


@dataclass
class JobStatus:
    """Everything ``rslp status`` shows, as data (for scripts and tests)."""

    manifest: JobManifest
    time: float
    steps: list[StepStatus]
    #: partition -> task state, per step (per-job steps under :data:`JOB_PARTITION`).
    tasks: dict[str, dict[str, str]]
    backlog: list[Backlog]
    queue_note: str
    failures: list[FailureGroup]
    failures_read: int
    failures_total: int
    observe: dict[str, Any] | None = None
    partitions: dict[str, str] = field(default_factory=dict)
    running: list[RunningTask] = field(default_factory=list)
    foreign_dead_letters: Counter[str] = field(default_factory=Counter)
    dead_letters_complete: bool = True

    def workers(self) -> dict[str, set[str]]:
        """Per topic, the workers whose tasks are alive (a heartbeat within two leases)."""
        out: dict[str, set[str]] = {topic: set() for topic in self.manifest.topics.values()}
        for r in self.running:
            if not r.stalled and not r.handed_back:
                out.setdefault(self.manifest.topics.get(r.step, "?"), set()).add(r.worker)
        return out

    @property
    def finished(self) -> bool:
        """Nothing left that a worker will run (every task done, dead or blocked)."""
        return all(s.remaining == 0 for s in self.steps)

    def eta(self) -> tuple[float | None, list[str]]:
        """Seconds until the slowest step with work left is done, and the steps with no throughput yet."""
        pending = [s for s in self.steps if s.remaining]
        known = [e for s in pending if (e := s.eta_seconds) is not None]
        return (max(known) if known else None), [s.step for s in pending if s.eta_seconds is None]

    def lost(self) -> int:
        """Queued tasks when every subscription is empty: their messages are gone."""
        if not self.backlog or any(b.counts is None for b in self.backlog):
            return 0
        if any(b.counts and (b.counts.backlog or b.counts.in_flight) for b in self.backlog):
            return 0
        return sum(s.counts["queued"] for s in self.steps)


# -- collecting -----------------------------------------------------------------------


@dataclass
class StepMarkers:
    """One step's markers, from one listing: each task's most final state, and throughput.

    ``done_times`` are the modification times of the done markers (of an even sample
    of them when a step has more than :data:`RATE_SAMPLE`: a stat each is most of a
    listing's cost on local disk); each stands for ``weight`` done markers.
    ``running`` holds the modification time of each task still running: its last
    heartbeat (one stat per running task, bounded by the workers, not the job).
    """

    states: dict[str, str]
    done_times: list[float]
    weight: float
    running: dict[str, float | None] = field(default_factory=dict)

    def done_since(self, since: float) -> float:
        """How many done markers were written at or after ``since`` (estimated from the sample)."""
        return sum(t >= since for t in self.done_times) * self.weight


def scan_markers(root: JobRoot, step: str, expected: int) -> StepMarkers:
    """``step``'s markers from one listing; ``expected`` (the step's task count) sizes the time sample."""
    # Task ids are hex digests, so their first 4 digits pick an even sample, with no second pass.
    cutoff = 0x10000 if expected <= RATE_SAMPLE else 0x10000 * RATE_SAMPLE // expected
    states: dict[str, str] = {}
    times: list[float] = []
    running: dict[str, Callable[[], float | None]] = {}
    done = 0
    for name, modified in listing(root.marker_folder(step)):
        if (parsed := parse_marker_name(name)) is None:
            continue
        task_id, state = parsed
        keep_most_final(states, task_id, state)
        if state == "done":
            done += 1
            if _sample_key(task_id) < cutoff and (t := modified()) is not None:
                times.append(t)
        elif state == "running":
            running[task_id] = modified
    beats = {task_id: modified() for task_id, modified in running.items() if states[task_id] == "running"}
    return StepMarkers(states, times, done / len(times) if times else 0.0, beats)


def _sample_key(task_id: str) -> int:
    try:
        return int(task_id[:4], 16)
    except ValueError:
        return 0


def _unmarked(before: str | None) -> str:
    """The state of a task without a marker, given its previous step's state (None: first step)."""
    if before is None or before == "done":
        return "queued"
    return "blocked" if before in ("dead", "blocked") else "waiting"


def _all_partitions(states: Iterable[str]) -> str:
    """The state that the first per-job step's predecessor is in: every partition's last step."""
    seen = set(states)
    if seen <= {"done"}:
        return "done"
    return "blocked" if seen & {"dead", "blocked"} else "waiting"


def partition_state(states: Sequence[str]) -> str:
    """A partition's state on the map, from its steps' states in order."""
    if "dead" in states or "blocked" in states:
        return "dead"
    if all(s == "done" for s in states):
        return "done"
    if "failed" in states:
        return "failed"
    if "running" in states or "stalled" in states or "done" in states:
        return "running"
    return "queued"


def collect(job_root: str, top: int = 10, now: float | None = None) -> JobStatus:
    """Read the job root (one listing per step) and its queue into a :class:`JobStatus`."""
    ledger = JobRoot(job_root)
    manifest = ledger.read_manifest()
    now = time.time() if now is None else now
    job_id = manifest.job_id
    tasks: dict[str, dict[str, str]] = {}
    markers: dict[str, StepMarkers] = {}
    reason_paths: list[tuple[str, str, UPath]] = []
    running: list[RunningTask] = []
    before: dict[str, str] | None = None  # the previous step's states, by partition
    check_partition_count(manifest, job_root)
    view = queue_view(manifest)
    letter_failures: list[tuple[str, str, str, str]] = []  # (step, kind, reason, partition)
    pids = list(manifest.partition_ids())
    plan = [(step, pids) for step in manifest.steps] + [(step, [JOB_PARTITION]) for step in manifest.job_steps]
    for step, partitions in plan:
        markers[step] = scan_markers(ledger, step, len(partitions))
        marked = markers[step].states
        if manifest.job_steps and step == manifest.job_steps[0] and before is not None:
            before = {JOB_PARTITION: _all_partitions(before.values())}
        states: dict[str, str] = {}
        live = running_tasks(ledger, step, markers[step].running, now)
        running += live
        by_id = {r.task_id: r for r in live}
        for pid in partitions:
            task_id = task_id_for(job_id, pid, step)
            state = marked.get(task_id)
            if state not in ("done", "dead") and (letter := view.letters.get(task_id)) is not None:
                state = "dead"  # its message is in the dead letters, with or without a marker
                letter_failures.append((step, *letter, pid))
            elif state is None:
                state = _unmarked(None if before is None else before[pid])
            elif state in ("failed", "dead"):
                reason_paths.append((state, step, ledger.marker_path(step, task_id, state)))
            elif state == "running" and (r := by_id.get(task_id)) is not None:
                state = "queued" if r.handed_back else "stalled" if r.stalled else state
            states[pid] = state
        tasks[step], before = states, states
        markers[step].states = {}  # read; let it go before the next step's listing
    since = max(now - RATE_WINDOW, manifest.created)
    steps = [
        StepStatus(
            step=step,
            topic=manifest.topics.get(step, "?"),
            counts={s: n for s, n in zip(TASK_STATES, _count(tasks[step].values()), strict=True)},
            rate=(markers[step].done_since(since) / (now - since) * 60) if now > since else None,
            done_times=markers[step].done_times,
            done_weight=markers[step].weight,
        )
        for step, _ in plan
    ]
    # An even spread over steps and partitions, so one step's failures cannot hide another's.
    sample = reason_paths[:: max(1, math.ceil(len(reason_paths) / MAX_REASON_READS))]
    return JobStatus(
        manifest=manifest,
        time=now,
        steps=steps,
        tasks=tasks,
        backlog=view.backlog,
        queue_note=view.note,
        failures=_failures(sample, letter_failures, top),
        failures_read=len(sample) + len(letter_failures),
        failures_total=len(reason_paths) + len(letter_failures),
        observe=_observe(ledger.output_dir / "observe.json"),
        partitions={pid: partition_state([tasks[step][pid] for step in manifest.steps]) for pid in pids},
        running=running,
        foreign_dead_letters=view.foreign,
        dead_letters_complete=view.complete,
    )


def _count(states: Iterable[str]) -> list[int]:
    counter = Counter(states)
    return [counter.get(s, 0) for s in TASK_STATES]


def _failures(
    paths: list[tuple[str, str, UPath]], letters: list[tuple[str, str, str, str]], top: int
) -> list[FailureGroup]:
    """Group failed/dead markers and dead letters by state, step, kind and reason (numbers ignored)."""
    groups: dict[tuple[str, str, str, str], FailureGroup] = {}

    def add(state: str, step: str, kind: str, reason: str, partition: str) -> None:
        key = (state, step, kind, re.sub(r"\d+", "N", reason))
        if key in groups:
            groups[key].count += 1
        else:
            groups[key] = FailureGroup(1, state, step, kind, reason, partition)

    for state, step, path in paths:
        try:
            marker = read_json_object(path)
        except FileNotFoundError:  # superseded or being replaced right now
            continue
        except (OSError, UnreadableFile) as e:  # counted, with why it could not be read
            marker = {"error": f"(marker unreadable: {e})", "kind": "?"}
        reason = " ".join(str(marker.get("error") or "no reason recorded").split())
        add(state, step, str(marker.get("kind") or "?"), reason, str((marker.get("task") or {}).get("partition") or ""))
    for step, kind, reason, partition in letters:
        add("dead", step, kind, reason, partition)
    return sorted(groups.values(), key=lambda g: (-g.count, g.step, g.reason))[:top]


def _observe(path: UPath) -> dict[str, Any] | None:
    try:
        return read_json_object(path)
    except (OSError, UnreadableFile):
        return None
