"""Requests and partitioners: how a job is split into partitions and windows.

A request is a GeoJSON file in WGS84. write_jobs splits it with the pipeline's
``partitioner`` into partitions (one task per step each, so they should be large), and
create_windows splits each partition with the ``window_partitioner`` into rslearn
windows (small: one model input each). Both are :class:`Partitioner` objects named by
``class_path`` / ``init_args``; any class on PYTHONPATH that subclasses it works, under a
module prefix the operator allows (:mod:`rslp.trust`).

Built-in partitioners:

- :class:`NoopPartitioner`: the whole request is one partition.
- :class:`FixedWindowPartitioner`: a box of N pixels around each point or polygon
  centroid, with a limit on how many.
- :class:`GridPartitioner`: the cells of a pixel grid that intersect the request, in
  the UTM zone of the request (or a given CRS).

Grids are aligned to multiples of the cell size in pixel coordinates, so a window grid
whose cell divides the partition grid's cell nests exactly inside the partitions.
"""

from __future__ import annotations

import abc
import functools
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pyproj
import shapely
import shapely.geometry
from pydantic import ConfigDict, PositiveFloat, PositiveInt
from pydantic.dataclasses import dataclass
from rasterio.crs import CRS
from rslearn.utils.geometry import WGS84_PROJECTION, Projection, STGeometry
from rslearn.utils.get_utm_ups_crs import get_utm_ups_crs
from upath import UPath

from rslp.errors import PermanentError, typed
from rslp.pipeline import timerange

#: A sliver of intersection smaller than this fraction of a cell is reprojection noise
#: along a partition border (about 1e-7 pixels), not requested area.
_SLIVER = 1e-6
_STRICT = ConfigDict(extra="forbid")


class RequestError(PermanentError):
    """The request file is unusable; the message names the file and field."""


def load_request(path: str) -> list[STGeometry]:
    """The request's geometries in WGS84: a FeatureCollection, a Feature or a bare geometry.

    A feature's ``properties.start_time`` / ``end_time`` become its geometry's time range
    (see :mod:`rslp.pipeline.timerange`); without them the time range is None.
    """
    source = UPath(path)
    try:
        raw = json.loads(source.read_text())
    except FileNotFoundError:
        raise RequestError(f"{path}: does not exist") from None
    except json.JSONDecodeError as e:
        raise RequestError(f"{path}: line {e.lineno} column {e.colno}: not valid JSON ({e.msg})") from None
    if not isinstance(raw, dict) or "type" not in raw:
        raise RequestError(f"{path}: type: expected a GeoJSON FeatureCollection, Feature or geometry")
    crs = (raw.get("crs") or {}).get("properties", {}).get("name", "CRS84")
    if not any(s in str(crs) for s in ("CRS84", "4326")):
        raise RequestError(f"{path}: crs: {crs} is not WGS84 longitude/latitude (GeoJSON is always WGS84)")
    if raw["type"] == "FeatureCollection":
        features = [(f"features.{i}", f) for i, f in enumerate(raw.get("features") or [])]
    elif raw["type"] == "Feature":
        features = [("", raw)]
    else:
        features = [("", {"geometry": raw})]
    if not features:
        raise RequestError(f"{path}: features: the request is empty (expected at least one Point or Polygon)")
    geometries = []
    for where, feature in features:
        if not isinstance(feature, dict):
            raise RequestError(f"{path}: {where or 'feature'}: expected a GeoJSON Feature object")
        geometry = _to_geometry(path, f"{where}.geometry" if where else "geometry", feature.get("geometry"))
        span = timerange.from_feature(feature.get("properties"), f"{path}: {where or 'feature'}")
        geometry.time_range = span.as_tuple() if span else None
        geometries.append(geometry)
    return geometries


def _to_geometry(path: str, where: str, geometry: Any) -> STGeometry:
    label = f"{path}: {where or 'geometry'}"
    try:
        shp = shapely.geometry.shape(geometry)
    except (AttributeError, KeyError, TypeError, ValueError, shapely.errors.ShapelyError) as e:
        raise RequestError(f"{label}: not a GeoJSON geometry ({typed(e)})") from None
    if shp.is_empty:
        raise RequestError(f"{label}: the geometry is empty")
    if not shp.is_valid:
        raise RequestError(f"{label}: invalid geometry ({shapely.is_valid_reason(shp)})")
    minx, miny, maxx, maxy = shp.bounds
    if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
        raise RequestError(f"{label}: coordinates {shp.bounds} are not longitude/latitude (is it projected?)")
    return STGeometry(WGS84_PROJECTION, shp, None)


def to_geojson(geometry: STGeometry) -> dict[str, Any]:
    """A GeoJSON geometry (WGS84) for ``geometry``."""
    return json.loads(to_geojson_texts([geometry])[0])  # type: ignore[no-any-return]


def to_geojson_texts(parts: Sequence[STGeometry]) -> list[str]:
    """GeoJSON geometry texts (WGS84) of many parts: one vectorized reprojection per projection.

    What :func:`to_geojson` gives one by one, about 20 times faster: planning a
    continent reprojects 100k parts, and one GDAL call each was most of its time.
    """
    texts: list[str] = [""] * len(parts)
    groups: dict[tuple[str, float, float], list[int]] = {}
    for i, part in enumerate(parts):
        p = part.projection
        groups.setdefault((p.crs.to_wkt(), p.x_resolution, p.y_resolution), []).append(i)
    for (wkt, xres, yres), indices in groups.items():
        transformer = _to_wgs84(wkt)

        def reproject(xy: np.ndarray, t: pyproj.Transformer = transformer, sx: float = xres, sy: float = yres) -> Any:
            return np.column_stack(t.transform(xy[:, 0] * sx, xy[:, 1] * sy))

        shapes = shapely.transform(np.array([parts[i].shp for i in indices], dtype=object), reproject)
        for i, text in zip(indices, shapely.to_geojson(shapes), strict=True):
            texts[i] = str(text)
    return texts


@functools.lru_cache(maxsize=16)
def _to_wgs84(wkt: str) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(pyproj.CRS.from_wkt(wkt), "EPSG:4326", always_xy=True)


def from_geojson(geometry: dict[str, Any]) -> STGeometry:
    """The inverse of :func:`to_geojson`."""
    return STGeometry(WGS84_PROJECTION, shapely.geometry.shape(geometry), None)


class Clip:
    """Clips parts to a request: the request's union, reprojected once per projection.

    Planning a continent clips about 100k parts; reprojecting the request for each
    would cost more than the rest of planning.
    """

    def __init__(self, request: list[STGeometry]) -> None:
        self.union = shapely.union_all([g.shp for g in request])
        self._wanted: dict[tuple[str, float, float], shapely.Geometry] = {}

    def wanted(self, projection: Projection) -> shapely.Geometry:
        """The request in ``projection`` (prepared for fast predicates)."""
        key = (str(projection.crs), projection.x_resolution, projection.y_resolution)
        if key not in self._wanted:
            shp = STGeometry(WGS84_PROJECTION, self.union, None).to_projection(projection).shp
            shapely.prepare(shp)
            self._wanted[key] = shp
        return self._wanted[key]

    def __call__(self, part: STGeometry) -> STGeometry | None:
        """The part of the request that ``part`` covers, or None if it covers none of it.

        Area requests are clipped to the part, so windows are only made where asked for;
        for point and line requests the part itself is the footprint (a window around a
        point is what was asked for).
        """
        wanted = self.wanted(part.projection)
        if self.union.area > 0:
            if shapely.contains_properly(wanted, part.shp):
                return part
            clipped = shapely.intersection(part.shp, wanted)
            if clipped.area <= _SLIVER * part.shp.area:
                return None
            return STGeometry(part.projection, clipped, None)
        return part if part.shp.intersects(wanted) else None


def footprint(part: STGeometry, request: list[STGeometry]) -> STGeometry | None:
    """The part of ``request`` that ``part`` covers (see :class:`Clip`, for many parts)."""
    return Clip(request)(part)


class Partitioner(abc.ABC):
    """Splits geometries into parts: partitions of a job, or windows of a partition."""

    @abc.abstractmethod
    def partition(self, geometries: list[STGeometry]) -> Iterable[STGeometry]:
        """Parts covering ``geometries`` (WGS84), each in a projection of its own choosing.

        Window partitioners must return parts in a projected CRS with pixel
        coordinates, whose bounds become rslearn window bounds. A list or a generator:
        write_jobs consumes them one at a time, so a partitioner that yields can plan
        a continent (and be stopped at the job's ``max_partitions``) in bounded memory.
        """


def _projection(crs: str | None, resolution: float, geometry: shapely.Geometry) -> Projection:
    if crs:
        return Projection(CRS.from_string(crs), resolution, -resolution)
    center = geometry.centroid
    return Projection(utm_ups_crs(center.x, center.y), resolution, -resolution)


#: Points this close (degrees) to a zone's edge or the equator ask rslearn directly: EPSG's
#: areas of use overlap their neighbours by up to 0.01 degrees there.
_ZONE_EDGE_MARGIN = 0.05


def utm_ups_crs(lon: float, lat: float) -> CRS:
    """The UTM or UPS CRS of a point: rslearn's ``get_utm_ups_crs``, asked once per zone, not per call.

    rslearn searches pyproj's CRS database on every call (about 65 ms), which made it
    most of a ``create_windows`` task. Its answer depends only on the 6-degree longitude
    band and the hemisphere (EPSG's UTM areas of use are those bands; Norway's and
    Svalbard's exceptions are not in them), so a point well inside a band is answered
    from a cache keyed by band and hemisphere. Points near an edge, the equator or the
    poles (UPS) go to rslearn itself, so the answer is always rslearn's.
    """
    band, offset = divmod(lon + 180.0, 6.0)
    near_edge = min(offset, 6.0 - offset) < _ZONE_EDGE_MARGIN or abs(lat) < _ZONE_EDGE_MARGIN
    if near_edge or not -79.0 < lat < 83.0 or not -180.0 < lon < 180.0:
        return get_utm_ups_crs(lon, lat)
    key = (int(band), lat > 0)
    if key not in _ZONE_CRS:
        _ZONE_CRS[key] = get_utm_ups_crs(lon, lat)
    return _ZONE_CRS[key]


#: (longitude band, northern hemisphere) -> that UTM zone's CRS; at most 120 entries.
_ZONE_CRS: dict[tuple[int, bool], CRS] = {}


@dataclass(config=_STRICT)
class NoopPartitioner(Partitioner):
    """The whole request is one part (its union, in WGS84)."""

    def partition(self, geometries: list[STGeometry]) -> list[STGeometry]:
        """One part: the union of all geometries."""
        return [STGeometry(WGS84_PROJECTION, shapely.union_all([g.shp for g in geometries]), None)]


@dataclass(config=_STRICT)
class FixedWindowPartitioner(Partitioner):
    """A ``size`` x ``size`` pixel box around each point or polygon centroid.

    ``limit`` refuses requests with more geometries than that, so a request of a
    million points fails at once instead of making a million tasks.
    """

    size: PositiveInt
    resolution: PositiveFloat = 10.0
    crs: str | None = None
    limit: PositiveInt | None = None

    def partition(self, geometries: list[STGeometry]) -> list[STGeometry]:
        """One box per geometry, in the UTM zone of that geometry (or ``crs``)."""
        if self.limit is not None and len(geometries) > self.limit:
            raise ValueError(f"{len(geometries)} geometries exceed limit={self.limit}")
        parts = []
        for g in geometries:
            projection = _projection(self.crs, self.resolution, g.shp)
            center = g.to_projection(projection).shp.centroid
            x0 = round(center.x - self.size / 2)
            y0 = round(center.y - self.size / 2)
            parts.append(STGeometry(projection, shapely.box(x0, y0, x0 + self.size, y0 + self.size), None))
        return parts


@dataclass(config=_STRICT)
class GridPartitioner(Partitioner):
    """Cells of a ``cell_size`` pixel grid that intersect the geometries.

    The grid is in ``crs`` if given, else in the UTM zone of the geometries' centroid,
    at ``resolution`` projection units (metres) per pixel, with cell edges at multiples
    of ``cell_size`` pixels.
    """

    cell_size: PositiveInt
    resolution: PositiveFloat = 10.0
    crs: str | None = None

    def partition(self, geometries: list[STGeometry]) -> Iterator[STGeometry]:
        """The intersecting cells, row by row (one row of cells in memory at a time)."""
        union = shapely.union_all([g.shp for g in geometries])
        projection = _projection(self.crs, self.resolution, union)
        shp = STGeometry(WGS84_PROJECTION, union, None).to_projection(projection).shp
        size = self.cell_size
        minx, miny, maxx, maxy = shp.bounds
        cols = range(math.floor(minx / size), max(math.ceil(maxx / size), math.floor(minx / size) + 1))
        rows = range(math.floor(miny / size), max(math.ceil(maxy / size), math.floor(miny / size) + 1))
        shapely.prepare(shp)
        for r in rows:
            cells = shapely.box([c * size for c in cols], r * size, [(c + 1) * size for c in cols], (r + 1) * size)
            hit = cells[shapely.intersects(shp, cells)]
            if shp.area > 0:
                hit = hit[shapely.area(shapely.intersection(hit, shp)) > _SLIVER * size * size]
            for cell in hit:
                yield STGeometry(projection, cell, None)
