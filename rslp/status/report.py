"""``rslp status``: where a job stands, read from its markers and its queue.

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

This module only reads; it never writes a marker or touches a message.
"""

from __future__ import annotations

import functools
import math
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from upath import UPath

from rslp import hints
from rslp.errors import PermanentError, QueueResourceError
from rslp.jobroot import STATES, JobManifest, JobRoot
from rslp.pipeline.job import JOB_PARTITION
from rslp.queue import Queue, QueueCounts, dead_letter_name, open_queue
from rslp.queue.base import dead_letter_kind, dead_letter_reason
from rslp.status.bounded import UnreadableFile, check_partition_count, read_json_object
from rslp.status.liveness import RunningTask, running_tasks
from rslp.storage import is_local
from rslp.task import TaskDecodeError, decode_task, task_id_for
from rslp.text import printable
from rslp.weather import CloudError

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
#: At most this many dead letters a topic are read to find the job's dead-lettered tasks.
MAX_DEAD_LETTER_READS = 1000
PUBSUB_BACKLOG_NOTE = "backlog n/a (Pub/Sub counts come from Cloud Monitoring)"
_RANK = {state: i for i, state in enumerate(STATES)}
_CLEAR = "\x1b[H\x1b[2J"


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
class Backlog:
    """One topic's subscription (same name): backlog, leased messages, oldest, dead letters."""

    topic: str
    steps: list[str]
    counts: QueueCounts | None
    dead_letters: int | None


@dataclass
class QueueView:
    """What the job's queue says: per-topic backlogs, and the job's tasks found among the dead letters.

    A task whose message was dead-lettered is dead whether or not a worker could write
    its dead marker (a worker that refuses a job root writes nothing under it), so the
    dead letters count as much as the markers do.
    """

    backlog: list[Backlog] = field(default_factory=list)
    note: str = ""
    #: task id -> (kind, reason) of this job's dead-lettered tasks.
    letters: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: per topic, dead letters that are not this job's tasks.
    foreign: Counter[str] = field(default_factory=Counter)
    #: False when a topic had more dead letters than status reads.
    complete: bool = True


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


def scan_markers(root: UPath, step: str, expected: int) -> StepMarkers:
    """``step``'s markers from one listing; ``expected`` (the step's task count) sizes the time sample."""
    base = root / "markers" / step
    # Task ids are hex digests, so their first 4 digits pick an even sample, with no second pass.
    cutoff = 0x10000 if expected <= RATE_SAMPLE else 0x10000 * RATE_SAMPLE // expected
    states: dict[str, str] = {}
    times: list[float] = []
    running: dict[str, Callable[[], float | None]] = {}
    done = 0
    for name, modified in _listing(base):
        if name.startswith("."):  # a marker being written
            continue
        task_id, _, rest = name.partition(".")
        state = rest.removesuffix(".json")
        if state not in _RANK:
            continue
        if task_id not in states or _RANK[state] > _RANK[states[task_id]]:
            states[task_id] = state
        if state == "done":
            done += 1
            if _sample_key(task_id) < cutoff and (t := modified()) is not None:
                times.append(t)
        elif state == "running":
            running[task_id] = modified
    beats = {task_id: modified() for task_id, modified in running.items() if states[task_id] == "running"}
    return StepMarkers(states, times, done / len(times) if times else 0.0, beats)


def newest_marker(root: UPath, step: str) -> float | None:
    """When ``step``'s newest marker was written (one listing, a stat per marker on local disk)."""
    return max((t for _, modified in _listing(root / "markers" / step) if (t := modified()) is not None), default=None)


def _sample_key(task_id: str) -> int:
    try:
        return int(task_id[:4], 16)
    except ValueError:
        return 0


def _listing(base: UPath) -> Iterator[tuple[str, Callable[[], float | None]]]:
    """(name, a function giving its modification time) for each entry of ``base``; nothing if it is missing.

    On local disk this is ``os.scandir``, whose entries stat lazily: fsspec's local
    listing builds a dict per entry, and that was most of status's time at 600k
    markers. Elsewhere it is one paginated listing with details (GCS returns the
    times with the names).
    """
    if is_local(base):
        try:
            with os.scandir(base.path) as it:
                for entry in it:
                    yield entry.name, functools.partial(_stat_mtime, entry)
        except FileNotFoundError:
            return
        return
    # fsspec caches listings per process: without this, `status --watch` on gs:// redraws its first view forever.
    base.fs.invalidate_cache(base.path)
    try:
        entries = base.fs.ls(base.path, detail=True)
    except FileNotFoundError:
        return
    for info in entries:
        yield str(info["name"]).rstrip("/").rsplit("/", 1)[-1], functools.partial(_modified, info)


def _stat_mtime(entry: os.DirEntry[str]) -> float:
    return entry.stat().st_mtime


def _modified(info: dict[str, Any]) -> float | None:
    """A listing entry's modification time, whatever the filesystem calls it."""
    for key in ("mtime", "updated", "LastModified", "last_modified", "created"):
        value = info.get(key)
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None


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
    view = _queue_view(manifest)
    letter_failures: list[tuple[str, str, str, str]] = []  # (step, kind, reason, partition)
    pids = list(manifest.partition_ids())
    plan = [(step, pids) for step in manifest.steps] + [(step, [JOB_PARTITION]) for step in manifest.job_steps]
    for step, partitions in plan:
        markers[step] = scan_markers(ledger.root, step, len(partitions))
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
        observe=_observe(ledger.root / "output" / "observe.json"),
        partitions={pid: partition_state([tasks[step][pid] for step in manifest.steps]) for pid in pids},
        running=running,
        foreign_dead_letters=view.foreign,
        dead_letters_complete=view.complete,
    )


def _count(states: Iterable[str]) -> list[int]:
    counter = Counter(states)
    return [counter.get(s, 0) for s in TASK_STATES]


def _queue_view(manifest: JobManifest) -> QueueView:
    """Per topic: what the queue says (the embedded queue knows; Pub/Sub does not say), and the job's dead letters.

    The queue is opened read-only: a manifest may name any file, and looking never
    changes it (an embedded queue is read with SQLite's ``mode=ro``; on Pub/Sub the
    dead letters read are handed back at once).
    """
    topics: dict[str, list[str]] = {}
    for step in manifest.steps + manifest.job_steps:
        topics.setdefault(manifest.topics.get(step, "?"), []).append(step)
    url = manifest.queue
    if not url:
        return QueueView(note="the manifest names no queue")
    view, notes = QueueView(), []
    try:
        with open_queue(url, readonly=True) as q:
            for topic, steps in topics.items():
                counts = q.counts(topic)
                dead = q.counts(dead_letter_name(topic))
                view.backlog.append(
                    Backlog(topic, steps, counts, None if dead is None else dead.backlog + (dead.in_flight or 0))
                )
            if any(b.counts is None for b in view.backlog):
                notes.append(f"{PUBSUB_BACKLOG_NOTE}: {q.counts_note}")
            try:
                for b in view.backlog:
                    if b.dead_letters != 0:
                        _read_dead_letters(q, b.topic, manifest, view)
            except (QueueResourceError, CloudError) as e:
                notes.append(f"dead letters not read: {' '.join(str(e).split())}")
    except (QueueResourceError, ValueError) as e:
        notes.append(f"queue {url}: {' '.join(str(e).split())}")
    view.note = "; ".join(notes)
    return view


def _read_dead_letters(q: Queue, topic: str, manifest: JobManifest, view: QueueView) -> None:
    """Add ``topic``'s dead letters to ``view``: this job's tasks by id, the rest counted as foreign.

    A dead letter is whatever someone published: it counts as this job's task only if
    it decodes, names this job and step, and carries the id that job, partition and step
    hash to (a partition the job does not have never matches one of the job's tasks).
    """
    steps = set(manifest.steps + manifest.job_steps)
    letters = q.peek(dead_letter_name(topic), MAX_DEAD_LETTER_READS)
    view.complete &= len(letters) < MAX_DEAD_LETTER_READS
    for m in letters:
        try:
            task = decode_task(m.data)
        except (TaskDecodeError, RecursionError, ValueError, TypeError):
            task = None
        if (
            task is None
            or task.job_id != manifest.job_id
            or task.step not in steps
            or task.task_id != task_id_for(manifest.job_id, task.partition or "", task.step or "")
        ):
            view.foreign[topic] += 1
            continue
        view.letters[task.task_id] = (dead_letter_kind(m), " ".join(dead_letter_reason(m).split()))


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


# -- rendering ------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], align: str) -> str:
    """Plain aligned columns; ``align`` has one letter per column, ``l`` or ``r``; control characters escaped."""
    cells = [[printable(str(c)).replace("\n", "\\n") for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align, strict=True)).rstrip()
        for row in cells
    )


def duration(seconds: float | None) -> str:
    """``45s``, ``12m03s``, ``3h12m``, ``2d03h``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def render(job: JobStatus, top_stalled: int = 10) -> str:
    """The report a user reads in a terminal."""
    m = job.manifest
    total = sum(s.total for s in job.steps)
    done = sum(s.counts["done"] for s in job.steps)
    lines = [
        f"job {m.job_id}  ({time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(job.time))})",
        f"  root   {m.job_root}",
        f"  queue  {m.queue or '-'}",
        f"  tasks  {m.partition_count} partitions x {len(m.steps)} steps + {len(m.job_steps)} per-job: "
        f"{total} tasks, {done} done ({100 * done / max(total, 1):.1f}%)",
        "",
    ]
    rows = [
        [
            s.step,
            s.topic,
            s.total,
            *(s.counts[c] for c in TASK_STATES),
            _rate(s.rate),
            duration(s.eta_seconds) if s.remaining else "-",
        ]
        for s in job.steps
    ]
    lines.append(table(["step", "topic", "total", *TASK_STATES, "done/min", "eta"], rows, "ll" + "r" * 11))
    lines += [
        "  waiting: its previous step is not done; blocked: a previous step is dead; queued: ready for a worker;",
        "  stalled: running, but no heartbeat for two leases (its worker died; the task runs again when a worker",
        "  takes its message); failed: failed before, will be retried; dead: dead-lettered (rslp dlq list);",
        f"  done/min: last {duration(RATE_WINDOW)}",
        "",
        "workers  " + ", ".join(f"{topic} {len(ids)}" for topic, ids in sorted(job.workers().items())),
    ]
    if stalled := sorted((r for r in job.running if r.stalled), key=lambda r: -r.age):
        lines += ["", f"stalled tasks ({len(stalled)}): no heartbeat for two leases"]
        rows = [[r.step, r.partition, r.worker, duration(r.age)] for r in stalled[:top_stalled]]
        lines.append(table(["step", "partition", "worker", "last heartbeat"], rows, "lllr"))
    lines += ["", "queue"]
    if job.backlog:
        rows = [
            [
                b.topic,
                ",".join(b.steps),
                *(("-", "-", "-") if b.counts is None else _counts(b.counts)),
                "-" if b.dead_letters is None else b.dead_letters,
            ]
            for b in job.backlog
        ]
        lines.append(
            table(["topic", "steps", "backlog", "in flight", "oldest unacked", "dead letters"], rows, "llrrrr")
        )
    if job.queue_note:
        lines.append(f"  {job.queue_note}")
    for topic, n in sorted(job.foreign_dead_letters.items()):
        lines.append(f"  {topic}: {n} dead letters that are not this job's tasks (rslp dlq list --queue ...)")
    if not job.dead_letters_complete:
        lines.append(f"  dead letters: the first {MAX_DEAD_LETTER_READS} of a topic read; rslp dlq list shows all")
    if lost := job.lost():
        lines.append(
            f"  {lost} queued tasks but the queue is empty: their messages are lost; "
            "rerun `rslp write-jobs` with the same arguments and --republish"
        )
    lines += ["", _eta_line(job)]
    if job.failures:
        sampled = "" if job.failures_read == job.failures_total else f", counted in a sample of {job.failures_read}"
        lines += ["", f"top failure reasons, of {job.failures_total} failed or dead tasks{sampled}"]
        rows = [[g.count, g.state, g.step, g.kind, f"{g.reason}  (e.g. {g.example})"] for g in job.failures]
        lines.append(table(["count", "state", "step", "kind", "reason"], rows, "rllll"))
    if dead := sum(s.counts["dead"] for s in job.steps):
        lines += ["", f"{dead} dead tasks run again only when replayed: fix what their reasons say, then", "  "]
        lines[-1] += replay_command(job.manifest)
    if job.observe is not None:
        lines += ["", _observe_line(job.observe)]
    return "\n".join(lines)


def replay_command(manifest: JobManifest) -> str:
    """The command that replays every dead-lettered task of the job, on the queue status read."""
    return hints.command(
        "dlq", "replay", "--job_root", manifest.job_root, "--queue", manifest.queue or "QUEUE", "--all"
    )


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1f}"


def _counts(c: QueueCounts) -> tuple[object, object, str]:
    return c.backlog, "-" if c.in_flight is None else c.in_flight, duration(c.oldest_unacked_seconds)


def _eta_line(job: JobStatus) -> str:
    if job.finished:
        dead = sum(s.counts["dead"] + s.counts["blocked"] for s in job.steps)
        if not dead:
            return "finished: every task is done"
        return f"nothing left to run: {dead} tasks dead or blocked behind a dead one (replay below)"
    eta, unknown = job.eta()
    if eta is None:
        return "eta: unknown (nothing finished in the last " + duration(RATE_WINDOW) + ")"
    bound = f" at least (no throughput yet in {', '.join(unknown)})" if unknown else ""
    return f"eta: {duration(eta)}{bound}"


def _observe_line(observe: dict[str, Any]) -> str:
    """One line on the predictions from observe.json (a WARNING when it has one)."""
    if observe.get("warning"):
        return f"WARNING: {observe['warning']}; see {observe.get('plot', 'observe.png')}"
    drift, threshold = observe.get("drift"), observe.get("threshold")
    if drift is None:
        return f"predictions: {observe.get('pixels', 0)} pixels, no reference distribution to compare with"
    under = "" if threshold is None else f", under the threshold {threshold:g}"
    return f"predictions: drift {drift:.3f} ({observe.get('metric', '?')} vs the reference){under}"


# -- the command ----------------------------------------------------------------------


def status(
    job_root: str | None = None,
    watch: bool = False,
    interval: float = 10.0,
    map: str | None = None,
    top: int = 10,
    root: str | None = None,
    plot: str | None = None,
) -> JobStatus | list[Any]:
    """Show where a job stands: per-step task counts, throughput, ETA, backlog, failure reasons.

    Reads the job root's manifest and markers (one listing per step) and asks the
    queue for its backlog (the embedded queue knows; Pub/Sub needs Cloud Monitoring).
    With --root instead, shows a rolling root's periods (:mod:`rslp.status.history`).

    Args:
        job_root: the job root (local path or gs://...) that write-jobs created.
        watch: redraw every INTERVAL seconds until nothing is left to run (`--watch`; Ctrl-C stops).
        interval: seconds between redraws with --watch.
        map: also draw the partitions coloured by state into this PNG.
        top: how many failure reasons to show.
        root: a rolling root (rslp rolling): one row per period (tasks done/total, drift, warning).
        plot: with --root, also draw the class distribution and drift across periods into this PNG.
    """
    if (job_root is None) == (root is None):
        raise PermanentError("give --job_root (one job) or --root (a rolling root's periods), not both or neither")
    if root is not None:
        from rslp.status.history import history

        if not UPath(root).exists():
            raise FileNotFoundError(f"rolling root {root} does not exist (rslp rolling --root makes one)")

        return history(root, plot)
    assert job_root is not None
    while True:
        job = collect(job_root, top=top)
        if map:
            from rslp.status.map import write_map

            write_map(job.manifest, job.partitions, map)
        text = printable(render(job) + (f"\n\nmap: {map}" if map else ""))
        if not watch:
            print(text)
            return job
        print(_CLEAR + text, flush=True)
        if job.finished:
            return job
        try:
            time.sleep(interval)
        except KeyboardInterrupt:
            return job
