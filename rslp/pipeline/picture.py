"""A picture of a prediction: the input imagery beside the predicted classes, with a legend and a scale bar.

The merged GeoTIFF is the answer a job gives, but a new user cannot see it without a
GIS. This draws it next to the imagery it was predicted from, cropped to the same
bounds, so one glance says whether the classes follow what is on the ground.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Class colours (colour-blind safe, Okabe-Ito), then grey for "no prediction".
PALETTE = ("#E69F00", "#0072B2", "#009E73", "#F0E442", "#56B4E9", "#D55E00", "#CC79A7", "#000000")
NODATA_COLOUR = "#BBBBBB"


def class_colour(index: int) -> str:
    """Class ``index``'s colour in every picture (prediction.png, history.png), so one class reads the same."""
    return PALETTE[index % len(PALETTE)]


def write_prediction_picture(
    prediction: str | Path,
    imagery: Sequence[str | Path],
    class_names: Sequence[str],
    out: str | Path,
    period: str | None = None,
    meanings: Mapping[str, str] | None = None,
) -> Path:
    """Draw ``prediction`` (class indices) beside ``imagery`` (GeoTIFFs; bands 1-3 as RGB) into ``out``.

    ``period``: the imagery's time range, in the title; ``meanings``: class name -> what
    it stands for, in the legend.
    """
    fig = draw_prediction(prediction, imagery, class_names, period, meanings)
    out = Path(out)
    fig.savefig(out, dpi=100)
    return out


def draw_prediction(
    prediction: str | Path,
    imagery: Sequence[str | Path],
    class_names: Sequence[str],
    period: str | None = None,
    meanings: Mapping[str, str] | None = None,
) -> Figure:
    """The figure of :func:`write_prediction_picture` (drawn on Agg, never through pyplot)."""
    import rasterio
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from rasterio.merge import merge

    with rasterio.open(prediction) as f:
        classes, nodata, bounds, res, crs = f.read(1), f.nodata, f.bounds, f.res, f.crs
    sources = [rasterio.open(p) for p in imagery]
    try:
        mosaic, _ = merge(sources, bounds=tuple(bounds), res=res, indexes=[1, 2, 3])
    finally:
        for source in sources:
            source.close()
    extent = (bounds.left, bounds.right, bounds.bottom, bounds.top)
    valid = classes[classes != nodata] if nodata is not None else classes
    class_names = list(class_names) or [str(i) for i in range(int(valid.max(initial=0)) + 1)]
    colours = [class_colour(i) for i in range(len(class_names))]

    fig = Figure(figsize=(11, 5.6), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    left.imshow(stretch(mosaic).transpose(1, 2, 0), extent=extent, interpolation="nearest")
    left.set_title("input imagery (bands 1, 2, 3 as RGB)")
    right.set_facecolor(NODATA_COLOUR)
    right.imshow(
        np.ma.masked_equal(classes, nodata) if nodata is not None else classes,
        cmap=ListedColormap(colours),
        vmin=-0.5,
        vmax=len(colours) - 0.5,
        extent=extent,
        interpolation="nearest",
    )
    right.set_title("predicted classes")
    meanings = meanings or {}
    handles = [
        Patch(color=c, label=f"{i}: {name}" + (f" ({meanings[name]})" if name in meanings else ""))
        for i, (name, c) in enumerate(zip(class_names, colours, strict=True))
    ]
    if nodata is not None and (classes == nodata).any():
        handles.append(Patch(color=NODATA_COLOUR, label="no prediction"))
    right.legend(handles=handles, loc="upper right", framealpha=0.9)
    metres_per_unit = 1.0 if crs.is_projected else 111_320 * math.cos(math.radians((bounds.bottom + bounds.top) / 2))
    for ax in (left, right):
        _scale_bar(ax, extent, metres_per_unit)
        ax.set_xticks([])
        ax.set_yticks([])
    unit = "m" if crs.is_projected else "degrees"
    when = f", imagery of {period}" if period else ""
    fig.suptitle(f"{Path(prediction).name} ({crs.to_string()}, {res[0]:g} {unit} pixels{when})", parse_math=False)
    return fig


def stretch(bands: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """Each band scaled so its 2nd-98th percentiles fill 0..1 (imagery is rarely bright enough as it is)."""
    out = np.zeros(bands.shape, dtype=np.float64)
    for i, band in enumerate(bands.astype(np.float64)):
        low, high = np.percentile(band, (2, 98))
        out[i] = np.clip((band - low) / max(high - low, 1e-9), 0, 1)
    return out


def nice_length(metres: float) -> float:
    """The largest 1, 2 or 5 x 10^k metres not longer than ``metres``."""
    power = 10 ** math.floor(math.log10(metres))
    return max(m * power for m in (1, 2, 5) if m * power <= metres)


def _scale_bar(ax: Any, extent: tuple[float, float, float, float], metres_per_unit: float) -> None:
    """A bar of a round length, about a quarter of the width, in the lower left corner."""
    left, right, bottom, top = extent
    metres = nice_length((right - left) * metres_per_unit / 4)
    length = metres / metres_per_unit
    x, y = left + (right - left) * 0.05, bottom + (top - bottom) * 0.06
    ax.plot([x, x + length], [y, y], color="white", linewidth=6, solid_capstyle="butt")
    ax.plot([x, x + length], [y, y], color="black", linewidth=3, solid_capstyle="butt")
    label = f"{metres / 1000:g} km" if metres >= 1000 else f"{metres:g} m"
    ax.text(
        x + length / 2,
        y + (top - bottom) * 0.03,
        label,
        ha="center",
        va="bottom",
        fontsize=10,
        bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1},
    )
