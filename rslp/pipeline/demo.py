"""The offline demo: synthetic imagery with a learnable pattern, and ``rslp demo``.

The imagery is a mosaic of UTM GeoTIFF tiles (EPSG:32610, 10 m pixels) with bands
B1..B3. Two smooth random fields ``a`` and ``b`` drive B1 and B2; the label of a pixel
is 1 where ``a > b`` (B1 brighter than B2 in expectation) and 0 elsewhere. Per-pixel
noise makes single pixels ambiguous near the boundary, so a few 3x3 convolutions beat
a per-pixel rule; B3 is pure noise, a distractor. Labels are written beside the images
(``labels/``, never read by the pipeline) so tests can score the output.

Everything is seeded: the same seed gives byte-identical files, so the data under
``tasks/demo/data/`` (git-ignored) is regenerated when absent rather than committed.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

#: Where the demo pipeline lives in a source checkout.
DEMO_DIR = Path(__file__).resolve().parents[2] / "tasks" / "demo"


@dataclass(frozen=True)
class SceneSpec:
    """A synthetic scene: a grid of tiles whose top-left corner is ``origin`` (UTM metres)."""

    seed: int = 0
    rows: int = 2
    cols: int = 2
    tile_size: int = 256
    resolution: float = 10.0
    crs: str = "EPSG:32610"
    # On the 256 px (2560 m) grid, so the demo's partitions and windows nest in tiles.
    origin: tuple[float, float] = (550400.0, 4180480.0)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the whole scene in pixels."""
        return self.rows * self.tile_size, self.cols * self.tile_size


#: The scene the demo request covers; training uses a different seed and place.
DEMO_SCENE = SceneSpec()
TRAIN_SCENE = SceneSpec(seed=1, origin=(550400.0, 4200960.0))
#: Normalisation constants shared by the generator and tasks/demo/model.yaml.
BASE, SIGNAL, NOISE = 2000.0, 600.0, 150.0


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> npt.NDArray[np.float64]:
    """A zero-mean, unit-variance random field with features about ``scale`` pixels wide."""
    noise = rng.standard_normal(shape)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    kernel = np.exp(-2 * (np.pi * scale) ** 2 * (fx**2 + fy**2) / 4)
    field = np.real(np.fft.ifft2(np.fft.fft2(noise) * kernel))
    return (field - field.mean()) / field.std()  # type: ignore[no-any-return]


def synthesize(spec: SceneSpec) -> tuple[npt.NDArray[np.uint16], npt.NDArray[np.uint8]]:
    """The scene's image (3, H, W) uint16 and label (H, W) uint8 arrays."""
    rng = np.random.default_rng(spec.seed)
    a = smooth_field(rng, spec.shape, scale=24)
    b = smooth_field(rng, spec.shape, scale=24)
    bands = [
        BASE + SIGNAL * a + rng.normal(0, NOISE, spec.shape),
        BASE + SIGNAL * b + rng.normal(0, NOISE, spec.shape),
        BASE + rng.normal(0, 4 * NOISE, spec.shape),
    ]
    image = np.clip(np.stack(bands), 0, 65535).astype(np.uint16)
    return image, (a > b).astype(np.uint8)


def write_scene(spec: SceneSpec, dest: Path) -> None:
    """Write ``dest/images/*.tif`` (bands B1..B3) and ``dest/labels/*.tif``, atomically.

    The files are written to a sibling folder that is renamed into place, so a crash
    leaves no half-written scene that a later run would take for a finished one.
    """
    import rasterio
    from rasterio.transform import from_origin

    image, label = synthesize(spec)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}")
    (tmp / "images").mkdir(parents=True)
    (tmp / "labels").mkdir()
    t = spec.tile_size
    for r in range(spec.rows):
        for c in range(spec.cols):
            x0 = spec.origin[0] + c * t * spec.resolution
            y0 = spec.origin[1] - r * t * spec.resolution
            profile = {
                "driver": "GTiff",
                "width": t,
                "height": t,
                "crs": spec.crs,
                "transform": from_origin(x0, y0, spec.resolution, spec.resolution),
                "compress": "deflate",
            }
            window = (slice(r * t, (r + 1) * t), slice(c * t, (c + 1) * t))
            with rasterio.open(tmp / "images" / f"tile_r{r}_c{c}.tif", "w", count=3, dtype="uint16", **profile) as f:
                f.write(image[:, window[0], window[1]])
            with rasterio.open(tmp / "labels" / f"tile_r{r}_c{c}.tif", "w", count=1, dtype="uint8", **profile) as f:
                f.write(label[None, window[0], window[1]])
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, dest)


def ensure_scene(spec: SceneSpec, dest: Path) -> bool:
    """Generate the scene under ``dest`` unless it is there already; True if generated."""
    if (dest / "images").is_dir() and (dest / "labels").is_dir():
        return False
    write_scene(spec, dest)
    return True


def score(output: str, labels: Path = DEMO_DIR / "data" / "labels") -> float:
    """The fraction of ``output``'s valid pixels that equal the synthetic labels under them."""
    import rasterio
    from rasterio.merge import merge

    with rasterio.open(output) as f:
        predicted = f.read(1)
        valid = predicted != f.nodata
        tiles = [rasterio.open(p) for p in sorted(labels.glob("*.tif"))]
        try:
            truth, _ = merge(tiles, bounds=tuple(f.bounds), res=f.res, nodata=255)
        finally:
            for tile in tiles:
                tile.close()
    return float((predicted[valid] == truth[0][valid]).mean())


def demo(workers: int = 2, job_root: str | None = None, verbose: bool = False) -> str:
    """Run the demo job end to end on this machine and print where the merged output is.

    Generates the synthetic imagery under tasks/demo/data/ if it is absent, then runs
    tasks/demo/pipeline.yaml over tasks/demo/request.geojson with local worker processes
    on the embedded queue, scores the output against the synthetic labels, and draws
    the imagery beside the predicted classes into a PNG next to the merged output.

    Args:
        workers: local worker processes.
        job_root: where the job goes (default: a fresh folder under tasks/demo/jobs/).
        verbose: print every log line instead of writing them to JOB_ROOT/logs/.

    Returns:
        The merged output's path.
    """
    from rslp.pipeline.config import load_pipeline_config
    from rslp.pipeline.picture import write_prediction_picture
    from rslp.pipeline.run import run

    started = time.monotonic()
    if ensure_scene(DEMO_SCENE, DEMO_DIR / "data"):
        print(f"generated synthetic imagery under {DEMO_DIR / 'data'}")
    root = job_root or str(DEMO_DIR / "jobs" / time.strftime("%Y%m%d-%H%M%S"))
    config = DEMO_DIR / "pipeline.yaml"
    outputs = run(str(config), str(DEMO_DIR / "request.geojson"), root, workers=workers, verbose=verbose)
    observe = load_pipeline_config(config).observe
    picture = write_prediction_picture(
        outputs[0],
        sorted((DEMO_DIR / "data" / "images").rglob("*.tif")),
        (observe.class_names if observe else None) or [],
        Path(outputs[0]).with_suffix(".png"),
    )
    print(f"demo finished in {time.monotonic() - started:.0f} s; merged output: {outputs[0]}")
    print(f"pixel accuracy against the synthetic labels: {score(outputs[0]):.3f}")
    print(f"picture of the prediction (imagery beside the predicted classes): {picture}")
    return outputs[0]
