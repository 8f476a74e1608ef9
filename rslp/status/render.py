"""How ``rslp status`` shows a job: the report a user reads in a terminal, from the read model.

Everything shown comes from a :class:`~rslp.status.model.JobStatus`
(:func:`rslp.status.model.collect`); nothing here reads a job root or a queue.
"""

from __future__ import annotations

import time
from typing import Any

from rslp import hints
from rslp.console import duration, table
from rslp.jobroot import JobManifest
from rslp.queue import QueueCounts
from rslp.status.model import RATE_WINDOW, TASK_STATES, JobStatus
from rslp.status.queue_view import MAX_DEAD_LETTER_READS


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
