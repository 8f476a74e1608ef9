"""``rslp status --root ROOT``: a rolling root's periods, one row each, and a picture of drift over time.

Reads the periods' own files through :func:`rslp.pipeline.catalog.build_catalog` (so
the view is current even when catalog.json is a run behind, and never what a forged
catalog.json says) and each period's markers (one listing per step) for its done/total
task count, counting only the tasks its plan derives. Like the rest of ``rslp status``
it only reads: the PNG it draws goes where ``--plot`` says, never into the root.
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from upath import UPath

from rslp.console import table
from rslp.jobroot import JobRoot
from rslp.jobroot.plan import check_partition_count, planned_states
from rslp.pipeline.catalog import build_catalog, period_root
from rslp.pipeline.picture import class_colour


@dataclass
class PeriodRow:
    """One period as ``rslp status --root`` shows it."""

    period: dict[str, Any]
    done: int
    dead: int
    total: int

    @property
    def status(self) -> str:
        """The catalog's status, or ``failed`` for an unfinished period with a dead-lettered task."""
        return "failed" if self.period["status"] != "done" and self.dead else str(self.period["status"])


def progress(job_root: str) -> tuple[int, int, int]:
    """(done, dead, total) tasks of a job, from one marker listing per step; only the plan's tasks count."""
    ledger = JobRoot(job_root)
    manifest = ledger.read_manifest()
    check_partition_count(manifest, job_root)
    steps = manifest.steps + manifest.job_steps
    states = Counter(state for step in steps for state in planned_states(ledger, manifest, step).values())
    total = manifest.partition_count * len(manifest.steps) + len(manifest.job_steps)
    return states["done"], states["dead"], total


def _drift(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def render(root: str, rows: list[PeriodRow]) -> str:
    """The table: period, time range, tasks done/total, status, drift vs reference and previous, warning."""
    body = [
        (
            r.period["id"],
            f"{r.period['start_datetime'] or '-'} .. {r.period['end_datetime'] or '-'}",
            f"{r.done}/{r.total}",
            r.status,
            _drift(r.period["drift_reference"]),
            _drift(r.period["drift_previous"]),
            r.period["warning"] or "",
        )
        for r in rows
    ]
    headers = ("period", "time range", "tasks", "status", "drift/ref", "drift/prev", "warning")
    return f"rolling root {root}: {len(rows)} periods\n" + table(headers, body, "lllllll")


def draw_history(rows: list[PeriodRow]) -> Figure:
    """Class distribution per period (stacked bars) above drift vs reference and vs previous period (lines)."""
    periods = [r.period for r in rows]
    names = [p["id"] for p in periods]
    classes = list(dict.fromkeys(c for p in periods for c in (p["distribution"] or {})))
    # Constrained layout keeps the axis labels inside the picture (fixed axes clipped them).
    fig = Figure(figsize=(max(6, 1.2 * len(names) + 2), 7), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    top, low = fig.subplots(2, 1)
    x = np.arange(len(names))
    bottom = np.zeros(len(names))
    for i, cls in enumerate(classes):  # class i has the colour it has in prediction.png
        values = np.array([(p["distribution"] or {}).get(cls, 0.0) for p in periods])
        top.bar(x, values, 0.6, bottom=bottom, label=cls, color=class_colour(i))
        bottom += values
    top.set_xticks(x, names)
    top.set_ylim(0, 1.2)  # room for the legend above the bars
    top.set_yticks([0, 0.25, 0.5, 0.75, 1])
    top.set_ylabel("fraction of pixels")
    top.set_title("class distribution per period")
    if classes:
        top.legend(loc="upper center", ncol=len(classes), frameon=False, fontsize="small")
    highest = 0.0
    for key, label in (("drift_reference", "vs reference"), ("drift_previous", "vs previous period")):
        drifts = [np.nan if p[key] is None else p[key] for p in periods]
        low.plot(x, drifts, marker="o", label=label)
        highest = max([highest, *(d for d in drifts if not np.isnan(d))])
    thresholds = {p["threshold"] for p in periods if p["threshold"] is not None}
    if len(thresholds) == 1:
        threshold = thresholds.pop()
        highest = max(highest, threshold)
        low.axhline(threshold, color="#d62728", linestyle="--", label="threshold")
    for i, p in enumerate(periods):
        if p["warning"]:
            low.annotate("!", (i, 0), color="#d62728", ha="center", fontweight="bold")
    low.set_xticks(x, names)
    low.set_xlim(-0.5, len(names) - 0.5)
    low.set_ylim(0, min(1.0, max(0.2, 1.5 * highest)))
    low.set_ylabel("drift (total variation)")
    low.legend(loc="upper right", frameon=False, fontsize="small")
    return fig


def history(root: str, plot: str | None = None) -> list[PeriodRow]:
    """Print one row per period of the rolling ROOT; with PLOT, also draw the distribution and drift as a PNG."""
    catalog = build_catalog(UPath(root))
    rows = [PeriodRow(p, *progress(str(period_root(UPath(root), p["id"])))) for p in catalog["periods"]]
    text = render(root, rows)
    if plot:
        buffer = io.BytesIO()
        draw_history(rows).savefig(buffer, format="png")
        UPath(plot).write_bytes(buffer.getvalue())
        text += f"\n\nplot: {plot}"
    print(text)
    return rows
