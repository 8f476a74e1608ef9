"""Postprocessors on small hand-made rslearn datasets: raster clipping, vector merge, atomic files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from rasterio.crs import CRS
from rslearn.dataset import Dataset, Window
from rslearn.utils.feature import Feature
from rslearn.utils.geometry import Projection, STGeometry
from rslearn.utils.raster_array import RasterArray
from upath import UPath

from rslp.pipeline.postprocess import RasterMerge, VectorMerge, atomic_output, listing

PROJECTION = Projection(CRS.from_epsg(32610), 10, -10)


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
    assert listing(dest.parent) == {"p00000.tif"}


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
    parts = [UPath(tmp_path / "parts" / f"p{i}.geojson") for i in range(2)]
    for part in parts:
        merge.merge_windows(dataset, [window], footprint, part)
    merge.combine(parts, UPath(tmp_path / "job.geojson"))
    features = json.loads((tmp_path / "job.geojson").read_text())["features"]
    assert [f["properties"]["label"] for f in features] == ["ship", "ship"]
    lon, lat = features[0]["geometry"]["coordinates"]
    assert -123 < lon < -122 and 37 < lat < 38


def test_atomic_output_leaves_nothing_behind_on_failure(tmp_path: Path) -> None:
    dest = UPath(tmp_path / "out" / "p1.tif")
    with pytest.raises(OSError, match="disk full"), atomic_output(dest) as tmp:
        tmp.write_text("half")
        raise OSError("disk full")
    assert not dest.exists() and list((tmp_path / "out").iterdir()) == []
    with atomic_output(dest) as tmp:
        tmp.write_text("whole")
        assert listing(dest.parent) == set()  # not visible until complete
    assert dest.read_text() == "whole"
