"""Requests and partitioners: job -> partitions -> windows, in the right projection."""

from __future__ import annotations

import json
from pathlib import Path

import pyproj
import pytest
import shapely
from rslearn.utils.geometry import STGeometry
from rslearn.utils.get_utm_ups_crs import get_utm_ups_crs

from rslp.pipeline.config import ClassSpec
from rslp.pipeline.configfile import ConfigError
from rslp.pipeline.demo import DEMO_DIR
from rslp.pipeline.partition import (
    FixedWindowPartitioner,
    GridPartitioner,
    NoopPartitioner,
    Partitioner,
    RequestError,
    footprint,
    from_geojson,
    load_request,
    to_geojson,
    utm_ups_crs,
)


class HalvesPartitioner(Partitioner):
    """A user partitioner, as one would put on PYTHONPATH: west and east halves of the request."""

    def partition(self, geometries: list[STGeometry]) -> list[STGeometry]:
        union = shapely.union_all([g.shp for g in geometries])
        minx, miny, maxx, maxy = union.bounds
        mid = (minx + maxx) / 2
        return [
            STGeometry(geometries[0].projection, shapely.box(minx, miny, mid, maxy), None),
            STGeometry(geometries[0].projection, shapely.box(mid, miny, maxx, maxy), None),
        ]


def write(tmp_path: Path, payload: object, name: str = "request.geojson") -> str:
    path = tmp_path / name
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return str(path)


def demo_request() -> list[STGeometry]:
    return load_request(str(DEMO_DIR / "request.geojson"))


def test_request_forms_feature_collection_feature_and_bare_geometry(tmp_path: Path) -> None:
    point = {"type": "Point", "coordinates": [-122.4, 37.75]}
    assert len(load_request(write(tmp_path, point))) == 1
    assert len(load_request(write(tmp_path, {"type": "Feature", "geometry": point, "properties": {}}))) == 1
    fc = {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": point}] * 3}
    geometries = load_request(write(tmp_path, fc))
    assert len(geometries) == 3 and geometries[0].projection.crs.to_epsg() == 4326


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"type": "FeatureCollection", "features": []}, "features: the request is empty"),
        ('{"type": "FeatureCollection", "features": [', "line 1 column 44: not valid JSON"),
        ([1, 2], "type: expected a GeoJSON FeatureCollection"),
        (
            {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": None}]},
            "features.0.geometry: not a GeoJSON geometry",
        ),
        (
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [551000.0, 4177000.0]}},
            "geometry: coordinates (551000.0, 4177000.0, 551000.0, 4177000.0) are not longitude/latitude",
        ),
        (
            {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": []}},
            "geometry: the geometry is empty",
        ),
        (
            {"type": "Point", "coordinates": [1, 2], "crs": {"type": "name", "properties": {"name": "EPSG:32610"}}},
            "crs: EPSG:32610 is not WGS84",
        ),
    ],
)
def test_bad_requests_are_one_line_naming_file_and_field(tmp_path: Path, payload: object, expected: str) -> None:
    path = write(tmp_path, payload)
    with pytest.raises(RequestError) as e:
        load_request(path)
    assert str(e.value).startswith(f"{path}: ") and "\n" not in str(e.value)
    assert expected in str(e.value)


def test_missing_request_file() -> None:
    with pytest.raises(RequestError, match=r"/nonexistent.geojson: does not exist"):
        load_request("/nonexistent.geojson")


def test_grid_partitioner_picks_the_utm_zone_and_aligned_cells() -> None:
    cells = list(GridPartitioner(cell_size=256, resolution=10).partition(demo_request()))
    assert {c.projection.crs.to_epsg() for c in cells} == {32610}
    assert {(c.projection.x_resolution, c.projection.y_resolution) for c in cells} == {(10, -10)}
    for cell in cells:
        minx, miny, maxx, maxy = cell.shp.bounds
        assert minx % 256 == 0 and miny % 256 == 0 and (maxx - minx, maxy - miny) == (256, 256)
    # The cells cover the request, and every cell overlaps it with some area.
    request = shapely.union_all([g.to_projection(cells[0].projection).shp for g in demo_request()])
    assert shapely.union_all([c.shp for c in cells]).contains(request)
    assert all(c.shp.intersection(request).area > 0 for c in cells)
    assert len(cells) == 4


def test_window_grid_nests_in_partitions_without_duplicates_or_gaps() -> None:
    """Windows made per partition footprint (via WGS84, as the steps do) equal windows of the whole request."""
    request = demo_request()
    windows = GridPartitioner(cell_size=64, resolution=10)
    direct = {c.shp.bounds for c in windows.partition(request)}
    per_partition: list[tuple[float, ...]] = []
    for part in GridPartitioner(cell_size=256, resolution=10).partition(request):
        fp = footprint(part, request)
        assert fp is not None
        round_trip = from_geojson(to_geojson(fp))
        per_partition += [c.shp.bounds for c in windows.partition([round_trip])]
    assert len(per_partition) == len(set(per_partition))
    assert set(per_partition) == direct


def test_fixed_window_partitioner_boxes_each_point_and_polygon_centroid(tmp_path: Path) -> None:
    fc = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [-122.4, 37.75]}},
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [13.4, 52.5]}},
        ],
    }
    geometries = load_request(write(tmp_path, fc))
    boxes = FixedWindowPartitioner(size=128, resolution=10).partition(geometries)
    assert [b.projection.crs.to_epsg() for b in boxes] == [32610, 32633]
    for box, point in zip(boxes, geometries, strict=True):
        minx, miny, maxx, maxy = box.shp.bounds
        assert (maxx - minx, maxy - miny) == (128, 128)
        assert box.shp.contains(point.to_projection(box.projection).shp)
    with pytest.raises(ValueError, match=r"2 geometries exceed limit=1"):
        FixedWindowPartitioner(size=128, limit=1).partition(geometries)


def test_point_requests_keep_the_whole_part_as_footprint(tmp_path: Path) -> None:
    point = load_request(write(tmp_path, {"type": "Point", "coordinates": [-122.4, 37.75]}))
    (box,) = FixedWindowPartitioner(size=64).partition(point)
    fp = footprint(box, point)
    assert fp is not None and fp.shp.equals(box.shp)


def test_noop_partitioner_is_the_whole_request() -> None:
    (part,) = NoopPartitioner().partition(demo_request())
    assert part.shp.equals(demo_request()[0].shp)


def test_user_partitioner_from_pythonpath_by_class_path(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = ClassSpec(class_path=f"{__name__}.HalvesPartitioner")
    monkeypatch.delenv("RSLP_CLASS_PREFIXES", raising=False)
    with pytest.raises(ConfigError, match="not under a module prefix"):  # the operator has not allowed it
        spec.build(Partitioner, "pipeline.yaml", "partitioner")
    monkeypatch.setenv("RSLP_CLASS_PREFIXES", "tests.unit")
    partitioner = spec.build(Partitioner, "pipeline.yaml", "partitioner")
    assert len(partitioner.partition(demo_request())) == 2


@pytest.mark.parametrize(
    ("lon", "lat"),
    [
        (5.0, 60.0),  # Norway's exception zone: EPSG (and rslearn) keep the regular band
        (7.0, 60.0),
        (15.0, 78.0),  # Svalbard
        (6.0, 60.0),  # on a band edge
        (-12.005, 10.0),  # inside the 0.01 degree overlap of zones 28N and 29N
        (-0.0001, 0.0001),
        (3.0, 0.0),  # the equator
        (179.9, -10.0),
        (-180.0, 10.0),
        (2.0, 83.5),  # near UPS north
        (2.0, -79.5),
        (2.0, 85.0),  # UPS
        (-70.0, -85.0),
        (-122.4, 47.6),
        (151.2, -33.9),
    ],
)
def test_cached_utm_zone_is_rslearns_answer(lon: float, lat: float) -> None:
    assert utm_ups_crs(lon, lat) == get_utm_ups_crs(lon, lat)
    assert utm_ups_crs(lon + 0.5 if lon < 179 else lon - 0.5, lat) == get_utm_ups_crs(
        lon + 0.5 if lon < 179 else lon - 0.5, lat
    )


def test_utm_zones_are_the_six_degree_bands_the_cache_assumes() -> None:
    """The cache keys on (band, hemisphere); EPSG's areas of use must be those bands, give or take its margin."""
    for info in pyproj.database.query_utm_crs_info(datum_name="WGS 84"):
        area = info.area_of_use
        assert area is not None
        assert abs(area.west - round(area.west / 6) * 6) <= 0.01, info
        assert abs(area.east - round(area.east / 6) * 6) <= 0.01, info
        assert 6 <= area.east - area.west <= 6.02, info
