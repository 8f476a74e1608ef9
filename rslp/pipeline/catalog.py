"""A rolling root's history: ``ROOT/catalog.json``, one entry per period, rebuilt whole.

A rolling root (made by ``rslp rolling``) holds one ordinary job per period::

    ROOT/rolling.json       what the root is for: config, request, cadence
    ROOT/<period>/          the period's job root (manifest, markers, output/...)
    ROOT/catalog.json       the history: a STAC-style catalog of the periods

The catalog is derived state, and never trusted: anyone who may write the root may
write it. Each period's own files (its manifest, outputs and ``output/observe.json``)
are the truth and are never rewritten; every rebuild reads them all again (never the
last catalog.json, so a forged or broken entry lives until the next rebuild at most),
and a period's job root and outputs come from the rolling root and the period's name
(``ROOT/<period>/``, outputs under ``ROOT/<period>/output/``), never from an entry.
Only folders named like a period (:data:`PERIOD_NAME`) with a manifest are periods.
The catalog is written as one object (a rename on local disk, a whole-object write on
gs://), never patched in place. Two writers can therefore never leave a torn
or merged file: the last one wins, and because every writer rebuilds from the periods'
files, the next rebuild repairs a view that a concurrent writer made a moment too early.
It is rebuilt by the observe step of each period's job when the period finishes and by
every ``rslp rolling`` run, so a cron schedule keeps it current even for a pipeline
without an observe step.

Each period's drift is given against the configured reference (from its observe step)
and against the previous period that has a distribution (total variation distance, as
in :mod:`rslp.pipeline.observe`); either above the config's threshold gives a warning.
"""

from __future__ import annotations

import math
import os
import re
import time
from typing import Any

from upath import UPath

from rslp.jobroot import JobRoot
from rslp.pipeline.observe import METRIC, total_variation
from rslp.storage import UnreadableFile, read_json_object, write_json_atomic

#: The file that marks a folder as a rolling root, written by ``rslp rolling``.
ROLLING_FILE = "rolling.json"
CATALOG_FILE = "catalog.json"
#: A period folder's name: a UTC day ``2026-01-15``, an ISO week ``2026-W03`` or a month ``2026-01``.
PERIOD_NAME = re.compile(r"\d{4}-(\d{2}(-\d{2})?|W\d{2})")


def _read_json(path: UPath) -> dict[str, Any] | None:
    try:
        return read_json_object(path)
    except (OSError, UnreadableFile):
        return None


def _inside(folder: UPath, path: UPath) -> bool:
    """Whether ``path`` lies in ``folder`` (same store, lexically below it)."""
    base = os.path.normpath(folder.path)
    return path.protocol == folder.protocol and os.path.commonpath([base, os.path.normpath(path.path)]) == base


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _observed(observe: dict[str, Any] | None) -> dict[str, Any]:
    """The fields of a period's observe.json the catalog uses, each of its type or None."""
    observe = observe or {}
    distribution = observe.get("distribution")
    if not (isinstance(distribution, dict) and all(_number(v) is not None for v in distribution.values())):
        distribution = None
    warning = observe.get("warning")
    return {
        "distribution": distribution,
        "drift_reference": _number(observe.get("drift")),
        "threshold": _number(observe.get("threshold")),
        "warning_reference": warning if isinstance(warning, str) else None,
    }


def rolling_root_of(job_root: UPath) -> UPath | None:
    """The rolling root a job root is a period of, or None for a job on its own."""
    parent = job_root.parent
    return parent if (parent / ROLLING_FILE).exists() else None


def period_roots(root: UPath) -> list[UPath]:
    """The period job roots under ``root``, oldest first (period names sort in time order)."""
    folders = (p for p in root.iterdir() if PERIOD_NAME.fullmatch(p.name) and JobRoot(p).manifest_path.exists())
    return sorted(folders, key=lambda p: p.name)


def period_entry(job_root: UPath) -> dict[str, Any]:
    """One period of the catalog, from its job root's manifest, outputs and observe.json.

    ``done`` when every output (and observe.json, if the job observes) exists, else
    ``running``. Done-ness comes from the files, not the markers: the observe step
    rebuilds the catalog before the worker writes its own done marker, and the files
    cost a few reads where markers cost a listing of the whole job.
    """
    from rslp.pipeline.job import Job

    job = Job.load(str(job_root))
    observe = _read_json(JobRoot(job.root).output_dir / "observe.json")
    # Outputs where a period keeps them (rolling refuses output_dir), whatever its files say.
    outputs = [p for p in job.output_paths() if _inside(JobRoot(job.root).output_dir, p)]
    done = all(p.exists() for p in outputs) and ("observe" not in job.manifest.job_steps or observe is not None)
    span = job.manifest.time_range
    return {
        "id": job_root.name,
        "start_datetime": span[0].isoformat() if span else None,
        "end_datetime": span[1].isoformat() if span else None,
        "job_id": job.manifest.job_id,
        "job_root": str(job_root),
        "status": "done" if done else "running",
        "outputs": {p.stem: str(p) for p in outputs if p.exists()},
        **_observed(observe),
    }


def with_drift(periods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each period with ``drift_previous`` (vs the last earlier period with a distribution) and its ``warning``."""
    previous: dict[str, Any] | None = None
    for period in periods:
        period["previous"] = previous["id"] if previous and period["distribution"] is not None else None
        period["drift_previous"] = None
        period["warning"] = period["warning_reference"]
        if period["distribution"] is None:
            continue
        if previous is not None:
            drift = total_variation(period["distribution"], previous["distribution"])
            period["drift_previous"] = drift
            threshold = period["threshold"]
            if threshold is not None and drift > threshold and not period["warning"]:
                period["warning"] = (
                    f"prediction drift {drift:.3f} ({METRIC} vs period {previous['id']}) "
                    f"exceeds the threshold {threshold:g}"
                )
        previous = period
    return periods


def build_catalog(root: UPath) -> dict[str, Any]:
    """The catalog of ``root`` as it stands now, from the period folders alone (a few reads each)."""
    rolling = _read_json(root / ROLLING_FILE) or {}
    periods = with_drift([period_entry(p) for p in period_roots(root)])
    return {
        "type": "Catalog",
        "stac_version": "1.0.0",
        "id": root.name,
        "description": (
            f"rolling runs of {rolling.get('config')} over {rolling.get('request')}, every {rolling.get('every')}"
        ),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rolling": rolling,
        "metric": METRIC,
        "periods": periods,
        "links": [{"rel": "child", "href": f"./{p['id']}/manifest.json", "title": p["id"]} for p in periods],
    }


def period_root(root: UPath, period: str) -> UPath:
    """The job root of ``period`` under the rolling ``root``: derived, never read from a catalog entry."""
    if not PERIOD_NAME.fullmatch(period):
        raise ValueError(f"{period!r} is not a period name (YYYY-MM-DD, YYYY-Www or YYYY-MM)")
    return root / period


def write_catalog(root: UPath) -> dict[str, Any]:
    """Rebuild ``ROOT/catalog.json`` from the periods and write it as one whole object."""
    catalog = build_catalog(root)
    write_json_atomic(root / CATALOG_FILE, catalog)
    return catalog
