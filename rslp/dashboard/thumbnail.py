"""A small PNG of a job's merged class raster, for the page: one colour per class, nodata clear.

Reads a decimated view (``out_shape``), so GDAL reads an overview when the file has one
(combine writes Cloud-Optimized GeoTIFFs) and the cost does not grow with the job.
"""

from __future__ import annotations

import io

import numpy as np
import rasterio
from matplotlib import colormaps
from matplotlib.image import imsave

#: The thumbnail's longer side, in pixels.
THUMBNAIL_PX = 480


def thumbnail_png(path: str, size: int = THUMBNAIL_PX) -> bytes:
    """The raster at ``path`` (local or gs://) as a PNG at most ``size`` pixels on its longer side."""
    with rasterio.open(path) as src:
        scale = max(src.width, src.height) / size
        shape = (max(1, round(src.height / max(scale, 1))), max(1, round(src.width / max(scale, 1))))
        band = src.read(1, out_shape=shape, masked=True)
    palette = colormaps["tab10"](np.arange(10))[:, :3]
    rgba = np.zeros((*band.shape, 4))
    rgba[..., :3] = palette[np.asarray(band.filled(0), dtype=np.int64) % len(palette)]
    rgba[..., 3] = ~np.ma.getmaskarray(band)
    buffer = io.BytesIO()
    imsave(buffer, rgba, format="png")
    return buffer.getvalue()
