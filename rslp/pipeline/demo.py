"""The offline demo: synthetic imagery with a learnable pattern, and ``rslp demo``.

The imagery is a mosaic of UTM GeoTIFF tiles (EPSG:32610, 10 m pixels) with bands
B1..B3, acquired on several dates. For each acquisition, two smooth random fields ``a``
and ``b`` drive B1 and B2; the label of a pixel is 1 where ``a > b`` (B1 brighter than
B2 in expectation) and 0 elsewhere. Per-pixel noise makes single pixels ambiguous near
the boundary, so a few 3x3 convolutions beat a per-pixel rule; B3 is pure noise, a
distractor.

Each acquisition draws its own fields, so the pattern differs from date to date and a
job for one month predicts that month's map, visibly unlike the other's. The demo's
February acquisition also shifts ``a`` up (a drier month: more pixels where B1 is
brighter), so its class distribution drifts from the reference. Images are named
``images/tile_r<row>_c<col>_<YYYY-MM-DD>.tif``, the date that
:class:`~rslp.pipeline.dated_files.DatedLocalFiles` gives the item; labels are written
beside them per date (``labels/<YYYY-MM-DD>/``, never read by the pipeline) so tests
can score a period's output against that period's truth.

Everything is seeded: the same spec gives byte-identical files, so the data under
``tasks/demo/data/`` (git-ignored) is regenerated when absent or made by another spec
(``scene.json`` records the spec) rather than committed.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from rslp.storage import atomic_folder

#: Where the demo pipeline lives in a source checkout.
DEMO_DIR = Path(__file__).resolve().parents[2] / "tasks" / "demo"


@dataclass(frozen=True)
class SceneSpec:
    """A synthetic scene: a grid of tiles whose top-left corner is ``origin`` (UTM metres)."""

    seed: int = 0
    #: (date, shift of field ``a``) per acquisition; a positive shift makes class 1 commoner.
    acquisitions: tuple[tuple[str, float], ...] = (("2026-01-15", 0.0), ("2026-02-15", 0.5))
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
TRAIN_SCENE = SceneSpec(seed=1, origin=(550400.0, 4200960.0), acquisitions=(("2025-12-15", 0.0),))
#: What the demo's classes (tasks/demo/pipeline.yaml's observe.class_names) stand for: label 1 where a > b.
CLASS_MEANINGS = {"b_brighter": "band 2 brighter than band 1", "a_brighter": "band 1 brighter than band 2"}
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


def synthesize(spec: SceneSpec, index: int = 0) -> tuple[npt.NDArray[np.uint16], npt.NDArray[np.uint8]]:
    """Acquisition ``index``'s image (3, H, W) uint16 and label (H, W) uint8 arrays."""
    rng = np.random.default_rng((spec.seed, index))
    shift = spec.acquisitions[index][1]
    a = smooth_field(rng, spec.shape, scale=24) + shift
    b = smooth_field(rng, spec.shape, scale=24)
    bands = [
        BASE + SIGNAL * a + rng.normal(0, NOISE, spec.shape),
        BASE + SIGNAL * b + rng.normal(0, NOISE, spec.shape),
        BASE + rng.normal(0, 4 * NOISE, spec.shape),
    ]
    image = np.clip(np.stack(bands), 0, 65535).astype(np.uint16)
    return image, (a > b).astype(np.uint8)


def write_scene(spec: SceneSpec, dest: Path) -> None:
    """Write ``dest/images/*_<date>.tif`` (bands B1..B3) and ``dest/labels/<date>/*.tif``, atomically.

    The files are written to a sibling folder that is renamed into place, so a crash
    leaves no half-written scene that a later run would take for a finished one.
    """
    import rasterio
    from rasterio.transform import from_origin

    with atomic_folder(dest) as tmp:
        (tmp / "images").mkdir(parents=True)
        t = spec.tile_size
        for index, (date, _) in enumerate(spec.acquisitions):
            image, label = synthesize(spec, index)
            (tmp / "labels" / date).mkdir(parents=True)
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
                    with rasterio.open(
                        tmp / "images" / f"tile_r{r}_c{c}_{date}.tif", "w", count=3, dtype="uint16", **profile
                    ) as f:
                        f.write(image[:, window[0], window[1]])
                    with rasterio.open(
                        tmp / "labels" / date / f"tile_r{r}_c{c}.tif", "w", count=1, dtype="uint8", **profile
                    ) as f:
                        f.write(label[None, window[0], window[1]])
        (tmp / "scene.json").write_text(json.dumps(asdict(spec)))


def ensure_scene(spec: SceneSpec, dest: Path) -> bool:
    """Generate the scene under ``dest`` unless that very spec is there already; True if generated."""
    stamp = dest / "scene.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == json.loads(json.dumps(asdict(spec))):
        return False
    write_scene(spec, dest)
    return True


def score(output: str, labels: Path = DEMO_DIR / "data" / "labels" / DEMO_SCENE.acquisitions[0][0]) -> float:
    """The fraction of ``output``'s valid pixels that equal the synthetic labels under them.

    ``labels`` is one acquisition's folder: by default January's, the demo job's period.
    """
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
    pipeline = load_pipeline_config(config)
    observe, period = pipeline.observe, pipeline.default_time_range()
    picture = write_prediction_picture(
        outputs[0],
        sorted((DEMO_DIR / "data" / "images").glob(f"*_{DEMO_SCENE.acquisitions[0][0]}.tif")),  # January's
        (observe.class_names if observe else None) or [],
        Path(outputs[0]).with_suffix(".png"),
        period=f"{period.start:%Y-%m-%d} to {period.end:%Y-%m-%d}" if period else None,
        meanings=CLASS_MEANINGS,
    )
    print(f"demo finished in {time.monotonic() - started:.0f} s; merged output: {outputs[0]}")
    print(f"pixel accuracy against the synthetic labels: {score(outputs[0]):.3f}")
    print(f"picture of the prediction (imagery beside the predicted classes): {picture}")
    return outputs[0]
