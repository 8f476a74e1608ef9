"""observe: class distribution and drift of a real GeoTIFF, the plot opened as a picture, and status's warning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from matplotlib.colors import to_rgb
from matplotlib.image import imread
from rasterio.transform import Affine

from rslp.pipeline.observe import PREDICTED_COLOUR, REFERENCE_COLOUR, draw_distribution, observe, total_variation
from rslp.status.model import collect
from rslp.status.render import render
from tests.unit.test_status_report import build_scenario

NAMES = ["background", "water", "forest"]
REFERENCE = {"background": 5, "water": 2.5, "forest": 2.5}  # normalised by observe: 0.5, 0.25, 0.25


def write_classes(path: Path, counts: dict[int, int], nodata: int = 255, dtype: str = "uint8") -> None:
    """A 100 x 100 tiled GeoTIFF holding ``counts`` pixels of each class, the rest nodata."""
    values = np.concatenate(
        [np.full(n, v) for v, n in counts.items()] + [np.full(10_000 - sum(counts.values()), nodata)]
    )
    array = np.random.default_rng(0).permutation(values).reshape(1, 100, 100).astype(dtype)
    profile = {
        "driver": "GTiff",
        "width": 100,
        "height": 100,
        "count": 1,
        "dtype": dtype,
        "nodata": nodata,
        "crs": "EPSG:32633",
        "transform": Affine(10, 0, 500_000, 0, -10, 5_000_000),
        "tiled": True,
        "blockxsize": 16,
        "blockysize": 16,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as f:
        f.write(array)


def test_distribution_and_total_variation_drift(tmp_path: Path) -> None:
    tif = tmp_path / "output" / "prediction.tif"
    write_classes(tif, {0: 5000, 1: 3000, 2: 1000})
    result = observe(str(tif), REFERENCE, threshold=0.1, class_names=NAMES)
    assert result["pixels"] == 9000  # the 1000 nodata pixels are left out
    assert result["counts"] == {"background": 5000, "water": 3000, "forest": 1000}
    assert result["distribution"] == pytest.approx({"background": 5 / 9, "water": 3 / 9, "forest": 1 / 9})
    assert result["reference"] == {"background": 0.5, "water": 0.25, "forest": 0.25}
    expected = 0.5 * (abs(5 / 9 - 0.5) + abs(3 / 9 - 0.25) + abs(1 / 9 - 0.25))
    assert result["drift"] == pytest.approx(expected)  # 0.139
    assert result["warning"] and "exceeds the threshold 0.1" in result["warning"]
    assert json.loads((tif.parent / "observe.json").read_text()) == result
    assert result["plot"] == str(tif.parent / "observe.png")


def test_drift_plot_bars_have_the_fractions_as_heights(tmp_path: Path) -> None:
    tif = tmp_path / "prediction.tif"
    write_classes(tif, {0: 5000, 1: 3000, 2: 1000})
    result = observe(str(tif), REFERENCE, threshold=0.1, class_names=NAMES)
    image = imread(tmp_path / "observe.png")
    assert image.shape[:2] == (500, 800)  # 8 x 5 inches at 100 dpi
    rgb = np.round(image[..., :3] * 255).astype(int)
    fig = draw_distribution(result)
    fig.canvas.draw()
    ax = fig.axes[0]
    for colour, fractions, shift in (
        (PREDICTED_COLOUR, result["distribution"], -0.2),
        (REFERENCE_COLOUR, result["reference"], 0.2),
    ):
        want = np.round(np.array(to_rgb(colour)) * 255).astype(int)
        for i, name in enumerate(NAMES):
            x, base = ax.transData.transform((i + shift, 0))
            _, top = ax.transData.transform((i + shift, fractions[name]))
            column = np.all(rgb[:, int(x)] == want, axis=-1)  # the bar's pixels in its middle column
            rows = np.flatnonzero(column)
            height = rows.max() - rows.min() + 1
            assert abs(height - (top - base)) <= 2, (colour, name, height, top - base)


def test_without_reference_there_is_no_drift_and_unnamed_classes_keep_their_number(tmp_path: Path) -> None:
    tif = tmp_path / "prediction.tif"
    write_classes(tif, {0: 10, 7: 30}, nodata=-1, dtype="int16")
    result = observe(str(tif), None, threshold=0.1, class_names=["background"], out_dir=str(tmp_path / "obs"))
    assert result["counts"] == {"background": 10, "7": 30}
    assert result["drift"] is None and result["warning"] is None
    assert (tmp_path / "obs" / "observe.json").exists() and (tmp_path / "obs" / "observe.png").exists()


def test_all_nodata_output_is_a_warning_and_float_rasters_are_refused(tmp_path: Path) -> None:
    tif = tmp_path / "empty.tif"
    write_classes(tif, {})
    assert observe(str(tif), REFERENCE, threshold=0.5)["warning"] == f"{tif} has no valid pixels"
    write_classes(tmp_path / "float.tif", {1: 5}, dtype="float32")
    with pytest.raises(ValueError, match="not integer classes"):
        observe(str(tmp_path / "float.tif"), None, None)


def test_total_variation_is_bounded_and_symmetric() -> None:
    assert total_variation({"a": 1.0}, {"b": 1.0}) == 1.0
    assert total_variation({"a": 0.3, "b": 0.7}, {"a": 0.3, "b": 0.7}) == 0.0
    assert total_variation({"a": 0.2, "b": 0.8}, {"a": 0.6, "b": 0.4}) == pytest.approx(0.4)
    assert total_variation({"a": 0.6, "b": 0.4}, {"a": 0.2, "b": 0.8}) == pytest.approx(0.4)


def test_status_warns_when_the_jobs_drift_exceeds_the_threshold(tmp_path: Path) -> None:
    root = tmp_path / "job"
    build_scenario(root)
    tif = root / "output" / "prediction.tif"
    write_classes(tif, {0: 5000, 1: 3000, 2: 1000})
    observe(str(tif), REFERENCE, threshold=0.1, class_names=NAMES)
    text = render(collect(str(root)))
    assert (
        f"WARNING: prediction drift 0.139 (total variation distance vs the reference) exceeds the threshold 0.1; "
        f"see {root / 'output' / 'observe.png'}" in text
    )
    observe(str(tif), REFERENCE, threshold=0.2, class_names=NAMES)
    assert "predictions: drift 0.139 (total variation distance vs the reference), under the threshold 0.2" in render(
        collect(str(root))
    )
