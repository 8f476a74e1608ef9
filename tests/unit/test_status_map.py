"""The status map, opened as a picture: its size, and each partition filled with its state's colour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.image import imread
from shapely.geometry import shape

from rslp.jobroot import JobRoot
from rslp.status.command import status
from rslp.status.map import STATE_COLOURS, draw_map, write_map
from tests.unit.test_status_report import EXPECTED_PARTITIONS, build_scenario, make_job


def pixel(image: np.ndarray, fig: Figure, lon: float, lat: float) -> tuple[float, ...]:
    """The RGB of the saved image where (lon, lat) falls on the map's axes."""
    x, y = fig.axes[0].transData.transform((lon, lat))
    return tuple(float(v) for v in image[image.shape[0] - 1 - int(y), int(x), :3])


def test_status_map_fills_each_partition_with_its_state_colour(tmp_path: Path) -> None:
    root = tmp_path / "job"
    build_scenario(root)
    png = tmp_path / "maps" / "status.png"
    job = status(str(root), map=str(png))
    assert job.partitions == EXPECTED_PARTITIONS
    image = imread(png)
    assert image.shape[:2] == (700, 900)  # 9 x 7 inches at 100 dpi
    # The same figure, drawn again, tells where each partition landed on the picture.
    fig = draw_map(job.manifest, job.partitions)
    fig.canvas.draw()
    for entry in JobRoot(root).partitions(job.manifest):
        centre = shape(entry.geometry).centroid
        want = to_rgb(STATE_COLOURS[job.partitions[entry.id]])
        assert np.allclose(pixel(image, fig, centre.x, centre.y), want, atol=1 / 255), entry.id
    # Each state's area on the picture: a tile is about 114 x 178 px here; the legend's swatch far less.
    rgb = np.round(image[..., :3] * 255).astype(int)
    for state, colour in STATE_COLOURS.items():
        area = np.all(rgb == np.round(np.array(to_rgb(colour)) * 255).astype(int), axis=-1).sum()
        tiles = sum(s == state for s in job.partitions.values())
        assert area > tiles * 15_000, (state, area)


def test_map_leaves_holes_in_partitions_unfilled(tmp_path: Path) -> None:
    manifest = make_job(tmp_path / "job", 1)
    outer = [[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]]
    hole = [[1, 1], [1, 3], [3, 3], [3, 1], [1, 1]]  # same orientation as the outer ring on purpose
    manifest = JobRoot(tmp_path / "job").write_job(
        manifest, [{"geometry": {"type": "Polygon", "coordinates": [outer, hole]}}]
    )
    png = tmp_path / "ring.png"
    write_map(manifest, {"p00000": "done"}, str(png))
    image = imread(png)
    fig = draw_map(manifest, {"p00000": "done"})
    fig.canvas.draw()
    assert np.allclose(pixel(image, fig, 0.5, 2), to_rgb(STATE_COLOURS["done"]), atol=1 / 255)
    assert np.allclose(pixel(image, fig, 2, 2), (1, 1, 1), atol=1 / 255)


def test_a_job_id_with_dollar_signs_is_drawn_as_text(tmp_path: Path) -> None:
    """Matplotlib would read "$...$" as mathtext, and a lone "$" crashed the map."""
    manifest = make_job(tmp_path / "job", 1)
    manifest.job_id = "cost-$x^$-2"  # "$x^$" is broken mathtext
    write_map(manifest, {}, str(tmp_path / "map.png"))
    fig = draw_map(manifest, {})
    assert fig.axes[0].get_title().startswith("job cost-$x^$-2:")
