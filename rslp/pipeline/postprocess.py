"""Postprocessors: window outputs -> one file per partition -> one file per job.

A postprocessor is named in pipeline.yaml by ``class_path`` / ``init_args`` like any
pluggable part. The postprocess step calls :meth:`Postprocessor.merge_windows` for its
partition; combine calls :meth:`Postprocessor.combine` on every partition's file once
all exist. Built in:

- :class:`RasterMerge`: a raster layer's window outputs into one GeoTIFF per
  partition, clipped to the partition's part of the request (outside it: nodata), then
  a mosaic Cloud-Optimized GeoTIFF for the job (:mod:`~rslp.pipeline.mosaic`).
- :class:`VectorMerge`: a vector layer's features into line-delimited GeoJSON (WGS84,
  one feature a line) per partition, then their concatenation for the job.

combine takes an *iterable* of partition files and streams: it never holds every
partition's data, nor every partition file open, at once, so its memory does not grow
with the job.

Every file is written whole or not at all (:func:`rslp.storage.atomic_output`): combine starts when
each partition's file *exists*, so a half-written file must never be visible.
"""

from __future__ import annotations

import abc
import json
import math
import shutil
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import ConfigDict
from pydantic.dataclasses import dataclass
from upath import UPath

from rslp.storage import atomic_output

if TYPE_CHECKING:
    from rslearn.dataset import Dataset, Window
    from rslearn.utils.geometry import STGeometry

_STRICT = ConfigDict(extra="forbid")


class Postprocessor(abc.ABC):
    """Merges window outputs per partition, and partition files per job.

    ``name`` names the outputs (``<name><suffix>``); ``layer`` is the rslearn layer read.
    """

    name: str
    layer: str
    suffix: ClassVar[str]

    @abc.abstractmethod
    def merge_windows(self, dataset: Dataset, windows: list[Window], footprint: STGeometry, dest: UPath) -> None:
        """Write the partition's file from ``windows``' ``layer`` (each must have it)."""

    @abc.abstractmethod
    def combine(self, sources: Iterable[UPath], dest: UPath) -> None:
        """Write the job's file from every partition's file, reading ``sources`` once, in order."""


def _require_layer(windows: list[Window], layer: str) -> None:
    if missing := [w.name for w in windows if not w.is_layer_completed(layer)]:
        raise RuntimeError(f"{len(missing)} windows lack a completed layer {layer!r}, e.g. {missing[0]}")


@dataclass(config=_STRICT)
class RasterMerge(Postprocessor):
    """A raster layer into one GeoTIFF per partition and a mosaic GeoTIFF per job.

    Pixels outside the request are ``nodata`` (pick a value that is not a class).
    ``crs`` (e.g. ``EPSG:32610``) is the job mosaic's CRS: partitions in other CRSs (a
    request across UTM zones) are reprojected to it, nearest neighbour. Default: the
    first partition's CRS.
    """

    layer: str = "output"
    name: str = "prediction"
    nodata: float = 255
    crs: str | None = None
    suffix: ClassVar[str] = ".tif"

    def merge_windows(self, dataset: Dataset, windows: list[Window], footprint: STGeometry, dest: UPath) -> None:
        """Paste each window into the footprint's bounding box, in the first window's projection."""
        import rasterio
        import rasterio.features
        from rasterio.enums import Resampling
        from rasterio.transform import Affine

        if not windows:
            raise RuntimeError(f"no windows to merge into {dest}")
        _require_layer(windows, self.layer)
        band_set = dataset.layers[self.layer].band_sets[0]
        raster_format = band_set.instantiate_raster_format()
        projection = windows[0].projection
        area = footprint.to_projection(projection).shp
        x0, y0 = math.floor(area.bounds[0]), math.floor(area.bounds[1])
        x1, y1 = math.ceil(area.bounds[2]), math.ceil(area.bounds[3])
        dtype = band_set.dtype.get_numpy_dtype()
        canvas = np.full((len(band_set.bands), y1 - y0, x1 - x0), self.nodata, dtype=dtype)
        for window in windows:
            wx0, wy0, wx1, wy1 = (round(v) for v in window.get_geometry().to_projection(projection).shp.bounds)
            box = (max(wx0, x0), max(wy0, y0), min(wx1, x1), min(wy1, y1))
            if box[0] >= box[2] or box[1] >= box[3]:
                continue
            raster = window.data.read_raster(
                self.layer,
                band_set.bands,
                raster_format,
                projection=projection,
                bounds=box,
                resampling=Resampling.nearest,
            )
            canvas[:, box[1] - y0 : box[3] - y0, box[0] - x0 : box[2] - x0] = raster.array[:, 0]
        outside = rasterio.features.geometry_mask(
            [area], out_shape=canvas.shape[1:], transform=Affine(1, 0, x0, 0, 1, y0)
        )
        canvas[:, outside] = self.nodata
        xres, yres = projection.x_resolution, projection.y_resolution
        transform = Affine(xres, 0, x0 * xres, 0, yres, y0 * yres)
        profile = _geotiff_profile(canvas, projection.crs, transform, self.nodata)
        with atomic_output(dest) as tmp, rasterio.open(tmp, "w", **profile) as f:
            f.write(canvas)

    def combine(self, sources: Iterable[UPath], dest: UPath) -> None:
        """A Cloud-Optimized GeoTIFF mosaic in ``crs`` (default: the first partition's CRS)."""
        from rslp.pipeline.mosaic import mosaic_to_cog

        with atomic_output(dest) as tmp:
            mosaic_to_cog(sources, tmp, self.nodata, self.crs)


@dataclass(config=_STRICT)
class VectorMerge(Postprocessor):
    """A vector layer into line-delimited GeoJSON (WGS84, RFC 8142 without separators) per partition and job.

    One feature a line, so a job's file is the concatenation of its partitions' files:
    combine copies bytes and never parses or holds the features, and readers (GDAL's
    GeoJSONSeq driver, ``pyogrio``, a line loop) can stream it too.
    """

    layer: str = "output"
    name: str = "prediction"
    suffix: ClassVar[str] = ".geojsonl"

    def merge_windows(self, dataset: Dataset, windows: list[Window], footprint: STGeometry, dest: UPath) -> None:
        """Every feature of every window that intersects the footprint, in WGS84, one a line."""
        _require_layer(windows, self.layer)
        vector_format = dataset.layers[self.layer].instantiate_vector_format()
        area = footprint.to_wgs84()
        with atomic_output(dest) as tmp, tmp.open("w") as f:
            for window in windows:
                for feature in window.data.read_vector(self.layer, vector_format):
                    wgs84 = feature.to_projection(area.projection)
                    if area.shp.intersects(wgs84.geometry.shp):
                        f.write(json.dumps(wgs84.to_geojson()) + "\n")

    def combine(self, sources: Iterable[UPath], dest: UPath) -> None:
        """The partitions' files concatenated, copied one at a time in chunks."""
        with atomic_output(dest) as tmp, tmp.open("wb") as out:
            for source in sources:
                with source.open("rb") as f:
                    shutil.copyfileobj(f, out)


def _geotiff_profile(array: Any, crs: Any, transform: Any, nodata: float) -> dict[str, Any]:
    """The rasterio profile of a deflate-compressed GeoTIFF holding ``array`` (bands, rows, cols)."""
    return {
        "driver": "GTiff",
        "width": array.shape[2],
        "height": array.shape[1],
        "count": array.shape[0],
        "dtype": array.dtype.name,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
        "compress": "deflate",
    }
