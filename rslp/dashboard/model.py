"""The JSON the dashboard page shows, built from ``rslp status``'s read model.

Everything comes from :func:`rslp.status.model.collect` (one listing per step) and
:func:`rslp.status.history.progress` for a rolling root; the only reads added here are
bounded: the dead markers shown (at most :data:`MAX_DEAD_SHOWN`), the partition
records once per server for the map (:func:`layout`), and the outputs' sizes once the
job is finished. Strings in the view are data from a job root or a message: the page
puts them in the document as text, never as markup.

The map's states travel as one character per partition in plan order
(:data:`PARTITION_CODES`), so 100k partitions are 100 kB a refresh, and the
partitions' outlines travel once, as float32 (:func:`layout`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

import numpy as np
from upath import UPath

from rslp.jobroot import JobManifest, JobRoot
from rslp.pipeline.catalog import build_catalog
from rslp.status.history import PeriodRow, progress
from rslp.status.map import LABELS, STATE_COLOURS
from rslp.status.model import RATE_WINDOW, TASK_STATES, JobStatus, StepStatus
from rslp.task import task_id_for

#: Colours of a step's task states: the map's for the states they share, so both read alike.
TASK_COLOURS = {
    "waiting": "#e7e7e7",
    "blocked": "#8c564b",
    "queued": STATE_COLOURS["queued"],
    "running": STATE_COLOURS["running"],
    "stalled": "#9467bd",
    "failed": STATE_COLOURS["failed"],
    "dead": STATE_COLOURS["dead"],
    "done": STATE_COLOURS["done"],
}
#: A partition's map state (:func:`rslp.status.model.partition_state`) as one character.
PARTITION_CODES = {"queued": "q", "running": "r", "failed": "f", "dead": "x", "done": "d"}
#: At most this many dead tasks are listed with their reasons (one marker read each).
MAX_DEAD_SHOWN = 100
#: Throughput is drawn in about this many bins over the job's life.
THROUGHPUT_BINS = 60
#: Shortest throughput bin, in seconds (a short job still gets a few points).
MIN_BIN_SECONDS = 2.0
#: Fields of observe.json the page shows (its paths stay on the server).
OBSERVE_FIELDS = ("pixels", "distribution", "reference", "metric", "drift", "threshold", "warning")


def public_url(url: str | None) -> str:
    """A queue or root URL without any ``user:password@`` part (never shown)."""
    return re.sub(r"//[^/@\s]*@", "//", url or "")


def layout(manifest: JobManifest) -> bytes:
    """Each partition's outline in WGS84 as four corners (eight float32: x, y each), in plan order.

    A grid cell is a quadrilateral in WGS84 (a square in its UTM zone): its own four
    corners, so neighbours tile without overlapping; any other shape gets its bounding
    box's corners. Streams the partition records a shard at a time (once per server,
    not per refresh); a partition without coordinates gets NaNs and is not drawn.
    """
    corners = np.full((manifest.partition_count, 4, 2), np.nan, dtype=np.float32)
    for i, entry in enumerate(JobRoot(manifest.job_root).partitions(manifest)):
        points = np.asarray(list(_points(entry.geometry.get("coordinates"))), dtype=np.float64)
        if len(points) == 5 and np.array_equal(points[0], points[-1]) and entry.geometry.get("type") == "Polygon":
            corners[i] = points[:4]
        elif points.size:
            (w, s), (e, n) = points.min(axis=0), points.max(axis=0)
            corners[i] = ((w, s), (e, s), (e, n), (w, n))
    return corners.tobytes()


def _points(coords: Any) -> Iterable[tuple[float, float]]:
    """Every (x, y) of a GeoJSON coordinate array, however deeply nested."""
    if isinstance(coords, list | tuple) and coords and isinstance(coords[0], int | float):
        yield float(coords[0]), float(coords[1])
    elif isinstance(coords, list | tuple):
        for c in coords:
            yield from _points(c)


def throughput(step: StepStatus, start: float, end: float) -> list[list[float]]:
    """``[bin start, tasks a minute]`` from ``start`` to ``end``, from the done markers' listed times."""
    if not step.done_times or end <= start:
        return []
    width = max(MIN_BIN_SECONDS, (end - start) / THROUGHPUT_BINS)
    bins = math.ceil((end - start) / width)
    counts, _ = np.histogram(step.done_times, bins=bins, range=(start, start + bins * width))
    per_minute = counts * step.done_weight * 60 / width
    return [[round(start + i * width, 1), round(float(r), 2)] for i, r in enumerate(per_minute)]


def dead_tasks(job: JobStatus, limit: int = MAX_DEAD_SHOWN) -> tuple[list[dict[str, str]], int]:
    """The dead tasks (at most ``limit``, read from their dead markers) and how many there are."""
    ledger = JobRoot(job.manifest.job_root)
    shown: list[dict[str, str]] = []
    total = 0
    for step, states in job.tasks.items():
        for pid, state in states.items():
            if state != "dead":
                continue
            total += 1
            if len(shown) < limit:
                task_id = task_id_for(job.manifest.job_id, pid, step)
                marker = _read_marker(ledger.marker_path(step, task_id, "dead"))
                reason = " ".join(str(marker.get("error") or "no reason recorded").split())
                kind = str(marker.get("kind") or "?")
                shown.append({"step": step, "partition": pid, "task_id": task_id, "kind": kind, "reason": reason})
    return shown, total


def _read_marker(path: UPath) -> dict[str, Any]:
    try:
        marker = json.loads(path.read_text())
    except (OSError, ValueError):  # replayed (removed) or being replaced right now
        return {}
    return marker if isinstance(marker, dict) else {}


def job_view(
    job: JobStatus,
    running_since: dict[str, float],
    outputs: list[dict[str, Any]],
    thumbnail: bool,
    refresh_seconds: float,
) -> dict[str, Any]:
    """Everything the page shows of one job, as JSON-ready data.

    ``running_since`` maps a running task id to when this server first saw it running
    (a heartbeat rewrites the marker, so the marker cannot say when the task started).
    """
    m = job.manifest
    eta, unknown = job.eta()
    # A finished job's throughput ends at its last done marker, not at the time of reading.
    last_done = max((t for s in job.steps for t in s.done_times), default=job.time)
    end = min(job.time, last_done + MIN_BIN_SECONDS) if job.finished else job.time
    dead, dead_total = dead_tasks(job)
    root = public_url(m.job_root)
    return {
        "kind": "job",
        "job_id": m.job_id,
        "job_root": root,
        "queue": public_url(m.queue),
        "time": job.time,
        "created": m.created,
        "refresh_seconds": round(refresh_seconds, 3),
        "finished": job.finished,
        "eta_seconds": eta,
        "eta_unknown_steps": unknown,
        "rate_window_seconds": RATE_WINDOW,
        "task_states": list(TASK_STATES),
        "task_colours": TASK_COLOURS,
        "steps": [
            {
                "step": s.step,
                "topic": s.topic,
                "total": s.total,
                "counts": s.counts,
                "rate": s.rate,
                "remaining": s.remaining,
                "eta_seconds": s.eta_seconds,
                "throughput": throughput(s, m.created, end),
            }
            for s in job.steps
        ],
        "partitions": {
            "count": m.partition_count,
            "states": "".join(PARTITION_CODES[s] for s in job.partitions.values()),
            "legend": [{"code": PARTITION_CODES[s], "label": LABELS[s], "colour": c} for s, c in STATE_COLOURS.items()],
        },
        "workers": [
            {
                "worker": r.worker,
                "step": r.step,
                "partition": r.partition,
                "task_id": r.task_id,
                "heartbeat_age": round(r.age, 1),
                "lease_seconds": r.lease_seconds,
                "stalled": r.stalled,
                "handed_back": r.handed_back,
                "since": running_since.get(r.task_id),
            }
            for r in sorted(job.running, key=lambda r: (not r.stalled, r.worker))
        ],
        "backlog": [
            {
                "topic": b.topic,
                "steps": b.steps,
                "backlog": None if b.counts is None else b.counts.backlog,
                "in_flight": None if b.counts is None else b.counts.in_flight,
                "oldest_unacked_seconds": None if b.counts is None else b.counts.oldest_unacked_seconds,
                "dead_letters": b.dead_letters,
            }
            for b in job.backlog
        ],
        "queue_note": job.queue_note,
        "lost": job.lost(),
        "failures": [asdict(g) for g in job.failures],
        "failures_read": job.failures_read,
        "failures_total": job.failures_total,
        "dead": dead,
        "dead_total": dead_total,
        "commands": {
            "list": f"rslp dlq list --job_root {root}",
            "replay": f"rslp dlq replay --job_root {root} --all",
        },
        "observe": None if job.observe is None else {k: job.observe.get(k) for k in OBSERVE_FIELDS},
        "outputs": outputs,
        "thumbnail": thumbnail,
    }


def root_view(root: str) -> dict[str, Any]:
    """A rolling root's periods, one row each, as ``rslp status --root`` reads them."""
    catalog = build_catalog(UPath(root))
    rows = [PeriodRow(p, *progress(p["job_root"])) for p in catalog["periods"]]
    return {
        "kind": "root",
        "root": public_url(root),
        "periods": [
            {
                "id": r.period["id"],
                "start": r.period["start_datetime"],
                "end": r.period["end_datetime"],
                "job_root": public_url(r.period["job_root"]),
                "done": r.done,
                "dead": r.dead,
                "total": r.total,
                "status": r.status,
                "drift_reference": r.period["drift_reference"],
                "drift_previous": r.period["drift_previous"],
                "threshold": r.period["threshold"],
                "warning": r.period["warning"],
                "distribution": r.period["distribution"],
            }
            for r in rows
        ],
    }
