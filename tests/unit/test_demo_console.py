"""What the demo shows a person: a picture of the prediction, and no third-party noise."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from rslp import log
from rslp.pipeline.picture import nice_length, write_prediction_picture

PROFILE = {"driver": "GTiff", "width": 64, "height": 48, "crs": "EPSG:32610"}
TRANSFORM = from_origin(550400.0, 4180480.0, 10.0, 10.0)


def write_tif(path: Path, data: np.ndarray, nodata: float | None = None) -> Path:
    with rasterio.open(
        path, "w", count=data.shape[0], dtype=data.dtype, transform=TRANSFORM, nodata=nodata, **PROFILE
    ) as f:
        f.write(data)
    return path


def test_the_prediction_picture_shows_imagery_beside_classes_with_legend_and_scale(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    image = write_tif(tmp_path / "image.tif", rng.integers(1000, 3000, (3, 48, 64), dtype=np.uint16))
    classes = (np.arange(64)[None, None, :] >= 32).astype(np.uint8).repeat(48, axis=1)
    classes[0, :4, :] = 255  # a strip with no prediction
    prediction = write_tif(tmp_path / "prediction.tif", classes, nodata=255)
    drawn: list[list[str]] = []
    real_savefig = plt.Figure.savefig

    def record(fig: plt.Figure, *args: object, **kwargs: object) -> None:
        legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
        drawn.append([t.get_text() for holder in fig.axes + legends for t in holder.texts])
        real_savefig(fig, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plt.Figure, "savefig", record)
        out = write_prediction_picture(prediction, [image], ["water", "land"], tmp_path / "prediction.png")
    assert out == tmp_path / "prediction.png" and out.stat().st_size > 10_000
    texts = drawn[0]
    assert {"0: water", "1: land", "no prediction"} <= set(texts)  # the legend
    assert texts.count("100 m") == 2  # a scale bar on each panel: 640 m wide / 4 -> 100 m


def test_scale_bars_have_round_lengths() -> None:
    assert [nice_length(m) for m in (0.7, 160, 640, 2500, 9999)] == [0.5, 100, 500, 2000, 5000]


def test_third_party_noise_is_dropped_here_and_in_child_processes() -> None:
    log.setup()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        log.quiet_noise()  # catch_warnings reset the filters: apply them again inside it
        warnings.warn_explicit(
            "deprecated", FutureWarning, "_pytree.py", 21, module="lightning.pytorch.utilities._pytree"
        )
        warnings.warn_explicit("a user's own warning", UserWarning, "mine.py", 1, module="mine")
    assert [str(w.message) for w in caught] == ["a user's own warning"]
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import warnings; warnings.warn_explicit('leaked semaphore', UserWarning, 'resource_tracker.py', 254,"
            " module='multiprocessing.resource_tracker'); warnings.warn('still shown')",
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=60,
    )
    assert "leaked semaphore" not in child.stderr and "still shown" in child.stderr
