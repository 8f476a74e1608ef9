"""The job's partitions on a map, filled by state: which tiles are done, failed or missing.

Drawn on matplotlib's Agg canvas directly, never through pyplot, so it needs no
display and does not change the backend of the process that calls it. Colours are
fixed per state so that maps of different jobs and times read the same way.
"""

from __future__ import annotations

import io
import math

import shapely
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.path import Path
from matplotlib.ticker import MaxNLocator
from shapely.geometry import Polygon, shape
from upath import UPath

from rslp.jobroot import JobManifest, JobRoot
from rslp.storage import write_atomic

#: State -> fill colour; a partition's state is :func:`rslp.status.model.partition_state`.
STATE_COLOURS = {
    "done": "#2ca02c",
    "running": "#1f77b4",
    "failed": "#ff7f0e",
    "dead": "#d62728",
    "queued": "#bdbdbd",
}
LABELS = {
    "done": "done",
    "running": "in progress",
    "failed": "failed, retrying",
    "dead": "dead-lettered (or blocked by it)",
    "queued": "queued, not started",
}
#: Above this many partitions, tiles get no outline (it would hide the fill).
OUTLINE_MAX = 2000


def _path(polygon: Polygon) -> Path:
    """A fillable path for a polygon with its holes (exterior counter-clockwise, holes clockwise)."""
    polygon = shapely.geometry.polygon.orient(polygon, 1.0)
    rings = [polygon.exterior, *polygon.interiors]
    return Path.make_compound_path(*(Path(list(ring.coords), closed=True) for ring in rings))


def draw_map(manifest: JobManifest, states: dict[str, str], title: str | None = None) -> Figure:
    """A figure of the job's partitions (WGS84) coloured by ``states`` (missing: queued).

    The partition records are streamed from the job root a shard at a time; only the
    drawable paths are kept. The axes are in degrees, stretched by the latitude so that tiles keep their shape.
    """
    # Constrained layout leaves room for the tick labels and the axis labels (fixed axes clipped "latitude").
    fig = Figure(figsize=(9, 7), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    paths, colours = [], []
    counts = {s: 0 for s in STATE_COLOURS}
    for entry in JobRoot(manifest.job_root).partitions(manifest):
        counts[states.get(entry.id, "queued")] += 1
        geometry = shape(entry.geometry)
        for polygon in getattr(geometry, "geoms", [geometry]):
            if isinstance(polygon, Polygon) and not polygon.is_empty:
                paths.append(_path(polygon))
                colours.append(STATE_COLOURS[states.get(entry.id, "queued")])
    outline = 0.4 if manifest.partition_count <= OUTLINE_MAX else 0.0
    # One collection of plain paths: a patch object per partition costs seconds at 10,000.
    ax.add_collection(PathCollection(paths, facecolors=colours, edgecolors="white", linewidths=outline))
    ax.autoscale_view()
    (_, y0), (_, y1) = ax.dataLim.get_points()
    ax.set_aspect(1 / max(math.cos(math.radians((y0 + y1) / 2)), 0.01))
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    handles = [
        Patch(facecolor=c, edgecolor="black", label=f"{LABELS[s]}: {counts[s]}") for s, c in STATE_COLOURS.items()
    ]
    fig.legend(handles=handles, loc="outside right center", title="partitions", frameon=False)
    # parse_math=False: a job id is text, and "$" would start mathtext (and crash on a lone one).
    ax.set_title(
        title or f"job {manifest.job_id}: {counts['done']}/{manifest.partition_count} partitions done",
        parse_math=False,
    )
    return fig


def write_map(manifest: JobManifest, states: dict[str, str], path: str) -> None:
    """Draw the map into ``path`` (any UPath; the format follows the suffix, default PNG)."""
    fig = draw_map(manifest, states)
    dest = UPath(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=dest.suffix.lstrip(".").lower() or "png", dpi=fig.dpi)
    write_atomic(dest, buffer.getvalue())
