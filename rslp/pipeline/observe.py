"""Observe a job's predictions: the class distribution of its output raster, and drift.

Drift is the total variation distance between the predicted and the reference class
distributions: half the sum of the absolute differences, between 0 and 1. It reads
plainly as the fraction of pixels that would have to change class for the two to
match, which is what a user needs to pick a threshold; it is symmetric and stays
finite when a class is missing on either side (KL divergence does not). Jensen-Shannon
shares those properties but its value has no such plain reading.

:func:`observe` writes ``observe.json`` and ``observe.png`` beside the output (or into
``out_dir``); ``rslp status`` shows the JSON's ``warning`` when it has one. This
module reads the output and writes only those two files.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from upath import UPath

from rslp.storage import local_copy, write_atomic, write_json_atomic

METRIC = "total variation distance"
PREDICTED_COLOUR = "#1f77b4"
REFERENCE_COLOUR = "#7f7f7f"


def class_counts(output_path: str) -> dict[int, int]:
    """Pixels per class value in band 1 of a GeoTIFF of integer classes, nodata left out.

    Counted block by block, so the decoded mosaic never has to fit in memory. A remote
    file (gs://) is first copied to local scratch disk, never into memory: rasterio
    would read a file object whole.
    """
    import rasterio

    path = UPath(output_path)
    counts: Counter[int] = Counter()
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rslp-observe-")))
        src = stack.enter_context(rasterio.open(local_copy(path, scratch)))
        if not np.issubdtype(np.dtype(src.dtypes[0]), np.integer):
            raise ValueError(f"{output_path}: band 1 is {src.dtypes[0]}, not integer classes")
        for _, window in src.block_windows(1):
            values = src.read(1, window=window, masked=True).compressed()
            if values.dtype.kind == "u" and values.dtype.itemsize <= 2:  # uint8/16: a bincount, 10x faster
                n = np.bincount(values)
                values = np.flatnonzero(n)
                n = n[values]
            else:
                values, n = np.unique(values, return_counts=True)
            counts.update(dict(zip(values.tolist(), n.tolist(), strict=True)))
    return dict(sorted(counts.items()))


def total_variation(p: dict[str, float], q: dict[str, float]) -> float:
    """Half the L1 distance between two distributions over the union of their classes."""
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q))


def _normalise(reference: dict[str, float]) -> dict[str, float]:
    total = sum(reference.values())
    if total <= 0 or any(v < 0 for v in reference.values()):
        raise ValueError(f"reference distribution must be non-negative with a positive sum, got {reference}")
    return {k: v / total for k, v in reference.items()}


def observe(
    output_path: str,
    reference: dict[str, float] | None,
    threshold: float | None,
    class_names: list[str] | None = None,
    out_dir: str | None = None,
) -> dict[str, Any]:
    """Class distribution of ``output_path`` and its drift from ``reference``; writes JSON and PNG.

    Args:
        output_path: the job's merged output GeoTIFF (integer class per pixel).
        reference: expected fraction per class, keyed by class name (normalised here);
            None records the distribution without a drift.
        threshold: drift above this gives the result a ``warning`` (shown by ``rslp status``).
        class_names: name of class value i at index i; other values are named by their number.
        out_dir: where observe.json and observe.png go (default: the output's folder).

    Returns:
        What observe.json holds: output, pixels, counts, distribution, reference, metric,
        drift, threshold, warning (a sentence or None), plot.
    """
    names = class_names or []
    counts = {(names[v] if 0 <= v < len(names) else str(v)): n for v, n in class_counts(output_path).items()}
    pixels = sum(counts.values())
    distribution = {k: n / pixels for k, n in counts.items()} if pixels else {}
    ref = _normalise(reference) if reference else None
    drift = total_variation(distribution, ref) if ref is not None and pixels else None
    warning = None
    if not pixels:
        warning = f"{output_path} has no valid pixels"
    elif drift is not None and threshold is not None and drift > threshold:
        warning = f"prediction drift {drift:.3f} ({METRIC} vs the reference) exceeds the threshold {threshold:g}"
    folder = UPath(out_dir) if out_dir else UPath(output_path).parent
    plot = folder / "observe.png"
    result = {
        "output": output_path,
        "pixels": pixels,
        "counts": counts,
        "distribution": distribution,
        "reference": ref,
        "metric": METRIC,
        "drift": drift,
        "threshold": threshold,
        "warning": warning,
        "plot": str(plot),
    }
    buffer = io.BytesIO()
    draw_distribution(result).savefig(buffer, format="png")
    write_atomic(plot, buffer.getvalue())
    write_json_atomic(folder / "observe.json", result)
    return result


def draw_distribution(result: dict[str, Any]) -> Figure:
    """Side-by-side bars per class: predicted fraction and, if given, the reference's."""
    predicted: dict[str, float] = result["distribution"]
    reference: dict[str, float] = result["reference"] or {}
    classes = list(predicted) + [k for k in reference if k not in predicted]
    fig = Figure(figsize=(8, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.1, 0.15, 0.85, 0.7))
    x = np.arange(len(classes))
    width = 0.4 if reference else 0.8
    shift = width / 2 if reference else 0.0
    label = f"predicted ({result['pixels']} pixels)"
    ax.bar(x - shift, [predicted.get(c, 0.0) for c in classes], width, color=PREDICTED_COLOUR, label=label)
    if reference:
        ax.bar(
            x + width / 2, [reference.get(c, 0.0) for c in classes], width, color=REFERENCE_COLOUR, label="reference"
        )
    ax.set_xticks(x, classes)
    ax.set_ylabel("fraction of pixels")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper right", frameon=False)
    drift = result["drift"]
    title = "class distribution" if drift is None else f"drift {drift:.3f} ({result['metric']})"
    if result["threshold"] is not None:
        title += f", threshold {result['threshold']:g}"
    ax.set_title(title, color="#d62728" if result["warning"] else "black")
    return fig
