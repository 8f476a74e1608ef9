"""Postprocessors on small hand-made datasets: raster clipping, streamed COG mosaics, vector merge, atomic files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyproj
import pytest
import rasterio
import rasterio.transform
import rasterio.warp
import rasterio.windows
import shapely
from rasterio.crs import CRS
from rio_cogeo.cogeo import cog_validate
from rslearn.dataset import Dataset, Window
from rslearn.utils.feature import Feature
from rslearn.utils.geometry import Projection, STGeometry
from rslearn.utils.raster_array import RasterArray
from upath import UPath

from rslp.pipeline import mosaic
from rslp.pipeline.postprocess import RasterMerge, VectorMerge

PROJECTION = Projection(CRS.from_epsg(32610), 10, -10)


def visible(folder: Path) -> set[str]:
    """The names a listing shows (hidden in-progress files left out)."""
    return {p.name for p in Path(folder).iterdir() if not p.name.startswith(".")} if Path(folder).exists() else set()


def make_dataset(root: Path, layer: dict[str, object]) -> Dataset:
    (root / "config.json").write_text(json.dumps({"layers": {"output": layer}}))
    return Dataset(UPath(root))


def make_window(dataset: Dataset, name: str, bounds: tuple[int, int, int, int]) -> Window:
    Window(
        storage=dataset.storage, group="default", name=name, projection=PROJECTION, bounds=bounds, time_range=None
    ).save()
    return dataset.load_windows(groups=["default"], names=[name])[0]


def test_raster_merge_pastes_windows_and_clips_to_the_footprint(tmp_path: Path) -> None:
    dataset = make_dataset(tmp_path, {"type": "raster", "band_sets": [{"dtype": "uint8", "bands": ["class"]}]})
    raster_format = dataset.layers["output"].band_sets[0].instantiate_raster_format()
    windows = []
    for i, x0 in enumerate((55040, 55044)):  # two 4x4 windows side by side
        bounds = (x0, -418048, x0 + 4, -418044)
        window = make_window(dataset, f"w{i}", bounds)
        with window.data.open_layer_writer("output") as writer:
            array = np.full((1, 4, 4), i + 1, dtype=np.uint8)
            writer.write_raster(["class"], raster_format, PROJECTION, bounds, RasterArray(chw_array=array))
        window.mark_layer_completed("output")
        windows.append(window)
    # A footprint over columns 55041..55047 and rows -418047..-418044: one column and row cut off.
    area = shapely.Polygon([(55041, -418047), (55047, -418047), (55047, -418044), (55041, -418044)])
    footprint = STGeometry(PROJECTION, area, None)
    dest = UPath(tmp_path / "out" / "p00000.tif")
    RasterMerge(nodata=255).merge_windows(dataset, windows, footprint, dest)
    with rasterio.open(dest.path) as f:
        assert f.crs.to_epsg() == 32610 and f.transform.a == 10 and f.transform.e == -10
        assert (f.transform.c, f.transform.f) == (550410, 4180470)
        assert f.read(1).tolist() == [[1, 1, 1, 2, 2, 2]] * 3
    assert visible(dest.parent) == {"p00000.tif"}


def test_raster_merge_refuses_windows_without_output(tmp_path: Path) -> None:
    dataset = make_dataset(tmp_path, {"type": "raster", "band_sets": [{"dtype": "uint8", "bands": ["class"]}]})
    window = make_window(dataset, "w0", (0, 0, 4, 4))
    footprint = STGeometry(PROJECTION, shapely.box(0, 0, 4, 4), None)
    with pytest.raises(RuntimeError, match=r"1 windows lack a completed layer 'output', e.g. w0"):
        RasterMerge().merge_windows(dataset, [window], footprint, UPath(tmp_path / "x.tif"))
    assert not (tmp_path / "x.tif").exists()


def test_vector_merge_writes_wgs84_features_per_partition_and_job(tmp_path: Path) -> None:
    dataset = make_dataset(tmp_path, {"type": "vector"})
    vector_format = dataset.layers["output"].instantiate_vector_format()
    window = make_window(dataset, "w0", (55040, -418048, 55104, -417984))
    inside = Feature(STGeometry(PROJECTION, shapely.Point(55050, -418000), None), {"label": "ship"})
    outside = Feature(STGeometry(PROJECTION, shapely.Point(55100, -417990), None), {"label": "far"})
    with window.data.open_layer_writer("output") as writer:
        writer.write_vector(vector_format, [inside, outside])
    window.mark_layer_completed("output")
    footprint = STGeometry(PROJECTION, shapely.box(55040, -418048, 55080, -417996), None)
    merge = VectorMerge()
    parts = [UPath(tmp_path / "parts" / f"p{i}.geojsonl") for i in range(2)]
    for part in parts:
        merge.merge_windows(dataset, [window], footprint, part)
    merge.combine(iter(parts), UPath(tmp_path / "job.geojsonl"))
    features = [json.loads(line) for line in (tmp_path / "job.geojsonl").read_text().splitlines()]
    assert [f["properties"]["label"] for f in features] == ["ship", "ship"]
    lon, lat = features[0]["geometry"]["coordinates"]
    assert -123 < lon < -122 and 37 < lat < 38


def write_partition(path: Path, epsg: int, left: float, top: float, value: int, size: int = 64) -> Path:
    """A synthetic partition file: SIZE x SIZE pixels of VALUE at 10 m, a nodata border of one pixel."""
    array = np.full((1, size, size), 255, dtype=np.uint8)
    array[:, 1:-1, 1:-1] = value
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 1, "dtype": "uint8", "nodata": 255}
    transform = rasterio.transform.from_origin(left, top, 10, 10)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", crs=CRS.from_epsg(epsg), transform=transform, **profile) as f:
        f.write(array)
    return path


def value_at(path: Path, lon: float, lat: float) -> int:
    with rasterio.open(path) as f:
        (x,), (y,) = rasterio.warp.transform("EPSG:4326", f.crs, [lon], [lat])
        return int(next(f.sample([(x, y)]))[0])


def test_raster_combine_streams_a_generator_into_a_valid_cog(tmp_path: Path) -> None:
    # A 3 x 3 grid of 64 px partitions on one 10 m grid, each with its own value.
    parts = [
        write_partition(tmp_path / "parts" / f"p{r}{c}.tif", 32610, 550400 + c * 620, 4180480 - r * 620, 3 * r + c)
        for r in range(3)
        for c in range(3)
    ]
    dest = UPath(tmp_path / "output" / "prediction.tif")
    RasterMerge().combine((UPath(p) for p in parts), dest)
    assert cog_validate(dest.path, strict=True)[0], cog_validate(dest.path)
    with rasterio.open(dest.path) as f, rasterio.open(parts[0]) as first:
        assert f.crs.to_epsg() == 32610 and f.res == (10.0, 10.0) and f.nodata == 255
        assert f.bounds == (550400, 4180480 - 2 * 620 - 640, 550400 + 2 * 620 + 640, 4180480)
        assert f.block_shapes == [(512, 512)]
        mosaic = f.read(1)
        assert sorted(np.unique(mosaic).tolist()) == [*range(9), 255]
        # Each partition's pixels land where they were, unchanged.
        for r in range(3):
            for c in range(3):
                window = rasterio.windows.from_bounds(*rasterio.open(parts[3 * r + c]).bounds, f.transform)
                block = mosaic[rasterio.windows.Window(*(round(v) for v in window.flatten())).toslices()]
                assert (block[1:-1, 1:-1] == 3 * r + c).all()
        assert first.read(1).shape == (64, 64)


def test_raster_combine_across_two_utm_zones_reprojects_to_the_configured_crs(tmp_path: Path) -> None:
    # Two partitions either side of the zone 10 / zone 11 boundary (120 W), each in its own zone.
    transformer = {epsg: pyproj.Transformer.from_crs(4326, epsg, always_xy=True) for epsg in (32610, 32611)}
    west_x, west_y = transformer[32610].transform(-120.004, 37.0)
    east_x, east_y = transformer[32611].transform(-119.996, 37.0)
    west = write_partition(tmp_path / "parts" / "west.tif", 32610, round(west_x, -1) - 320, round(west_y, -1), 1)
    east = write_partition(tmp_path / "parts" / "east.tif", 32611, round(east_x, -1), round(east_y, -1), 2)
    for crs, epsg in ((None, 32610), ("EPSG:32611", 32611)):
        dest = UPath(tmp_path / f"out-{epsg}" / "prediction.tif")
        RasterMerge(crs=crs).combine(iter([UPath(west), UPath(east)]), dest)
        assert cog_validate(dest.path, strict=True)[0]
        with rasterio.open(dest.path) as f:
            assert f.crs.to_epsg() == epsg and f.res == (10.0, 10.0)
            counts = dict(zip(*np.unique(f.read(1), return_counts=True), strict=True))
        # Each partition keeps its area (62 x 62 valid pixels) to within the reprojection's edge effects.
        assert abs(int(counts[1]) - 62 * 62) < 62 * 4 and abs(int(counts[2]) - 62 * 62) < 62 * 4
        assert value_at(dest.path, -120.006, 36.998) == 1
        assert value_at(dest.path, -119.994, 36.998) == 2


def test_raster_combine_in_many_strips_gives_the_same_mosaic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Partitions in two zones; strips of 10 rows cut every partition into several.
    transformer = pyproj.Transformer.from_crs(4326, 32611, always_xy=True)
    east_x, east_y = transformer.transform(-119.99, 36.99)
    parts = [
        write_partition(tmp_path / "parts" / f"p{r}{c}.tif", 32610, 780000 + c * 620, 4100000 - r * 620, 3 * r + c)
        for r in range(2)
        for c in range(2)
    ] + [write_partition(tmp_path / "parts" / "east.tif", 32611, round(east_x, -1), round(east_y, -1), 7)]
    mosaics = []
    for strip in (mosaic.STRIP, 10):
        monkeypatch.setattr(mosaic, "STRIP", strip)
        dest = UPath(tmp_path / f"strip{strip}" / "prediction.tif")
        RasterMerge().combine(iter(UPath(p) for p in parts), dest)
        with rasterio.open(dest.path) as f:
            mosaics.append((f.transform, f.read()))
    assert mosaics[0][0] == mosaics[1][0]
    assert np.array_equal(mosaics[0][1], mosaics[1][1])
    assert set(np.unique(mosaics[0][1]).tolist()) == {0, 1, 3, 4, 7, 255}


def test_raster_combine_names_a_partition_whose_bands_differ(tmp_path: Path) -> None:
    good = write_partition(tmp_path / "p0.tif", 32610, 550400, 4180480, 1)
    bad = tmp_path / "p1.tif"
    profile = {"driver": "GTiff", "width": 4, "height": 4, "count": 2, "dtype": "uint8", "crs": "EPSG:32610"}
    with rasterio.open(bad, "w", transform=rasterio.transform.from_origin(551040, 4180480, 10, 10), **profile) as f:
        f.write(np.zeros((2, 4, 4), dtype=np.uint8))
    dest = UPath(tmp_path / "out" / "prediction.tif")
    with pytest.raises(ValueError, match=rf"^{bad}: .*'count': 2.* differs from the first partition's"):
        RasterMerge().combine(iter([UPath(good), UPath(bad)]), dest)
    assert not dest.exists()


def test_combine_stops_at_a_missing_partition_file_and_writes_nothing(tmp_path: Path) -> None:
    from rslp.pipeline.steps import _every_one_present

    present = write_partition(tmp_path / "p0.tif", 32610, 550400, 4180480, 1)
    sources = (UPath(p) for p in (present, tmp_path / "p1.tif"))
    dest = UPath(tmp_path / "out" / "prediction.tif")
    with pytest.raises(RuntimeError, match=rf"^combine needs every partition's output; {tmp_path}/p1.tif is missing$"):
        RasterMerge().combine(_every_one_present(sources), dest)
    assert not dest.exists()
