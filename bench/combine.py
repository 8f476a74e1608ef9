"""Combine at scale: peak memory and time of the job mosaic against the number of partitions.

N synthetic partition GeoTIFFs (256 x 256 px of uint8 classes at 10 m, deflate, the
size of the demo's partitions) on one UTM grid, in a square of partitions; then
``RasterMerge.combine`` over a generator of their paths, as the combine step calls
it, in a fresh process whose peak RSS (its ``VmHWM``) and wall time
are recorded. A two-zone run (half the partitions in the next UTM zone, reprojected
into the first's CRS) shows the cost of the warp path. The output is checked with
rio-cogeo's ``cog_validate``. Goal: peak RSS under 1 GB and flat in N (the largest N
within 1.5x of the smallest); for scale, at 10k partitions the mosaic is 655 Mpx,
which the former in-memory merge held whole.

Run ``python -m bench.combine`` (``--sizes 100,1000`` for fewer); the plot goes to
bench/combine.png.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import REPO, peak_rss_kb, print_result, scratch_dir

SIZES = (100, 1000, 10000)
TILE = 256
RSS_LIMIT_MB = 1024
PLOT = REPO / "bench" / "combine.png"


def write_partitions(folder: Path, n: int, zones: int = 1) -> list[Path]:
    """N partition files in a square of partitions; with ``zones`` = 2 the east half is in UTM zone 11."""
    import numpy as np
    import pyproj
    import rasterio
    from rasterio.transform import from_origin

    side = math.ceil(math.sqrt(n))
    size = TILE * 10.0
    to_zone11 = pyproj.Transformer.from_crs(32610, 32611, always_xy=True)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    # Classes in 8 px patches: smoother than noise, as a prediction map is.
    pattern = rng.integers(0, 4, size=(TILE // 8, TILE // 8), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    paths = []
    for i in range(n):
        row, col = divmod(i, side)
        left, top = 700000.0 + col * size - side * size / 2, 4200000.0 - row * size
        epsg = 32610
        if zones == 2 and col >= side // 2:
            x, y = to_zone11.transform(left, top)
            left, top, epsg = round(x, -1), round(y, -1), 32611
        path = folder / f"p{i:06d}.tif"
        profile = {"driver": "GTiff", "width": TILE, "height": TILE, "count": 1, "dtype": "uint8", "nodata": 255}
        with rasterio.open(
            path, "w", crs=f"EPSG:{epsg}", transform=from_origin(left, top, 10, 10), compress="deflate", **profile
        ) as f:
            f.write(((pattern + i % 5) % 5)[None])
        paths.append(path)
    return paths


def child(folder: str, dest: str) -> None:
    """Combine every partition file in ``folder`` into ``dest`` (run in a fresh process)."""
    from upath import UPath

    from rslp.pipeline.postprocess import RasterMerge

    sources = (UPath(p) for p in sorted(Path(folder).glob("p*.tif")))
    RasterMerge().combine(sources, UPath(dest))
    print(peak_rss_kb())


def measure(folder: Path, dest: Path) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of one combine in a child process."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.combine", "--child", str(folder), str(dest)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"combine of {folder} exited with {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return int(proc.stdout.split()[-1]) / 1024, seconds


def run(sizes: tuple[int, ...] = SIZES, two_zones: int | None = 1000, plot: Path | None = PLOT) -> dict[str, Any]:
    """Peak RSS and time of combine at each size (and once across two UTM zones)."""
    from rio_cogeo.cogeo import cog_validate

    out: dict[str, Any] = {"partition_px": TILE, "sizes": list(sizes)}
    runs = [(n, 1) for n in sizes] + ([(two_zones, 2)] if two_zones else [])
    for n, zones in runs:
        with scratch_dir("combine") as scratch:
            write_partitions(scratch / "parts", n, zones)
            rss, seconds = measure(scratch / "parts", scratch / "prediction.tif")
            valid, errors, _ = cog_validate(str(scratch / "prediction.tif"), quiet=True)
            if not valid:
                raise RuntimeError(f"combine of {n} partitions is not a valid COG: {errors}")
            import rasterio

            with rasterio.open(scratch / "prediction.tif") as f:
                mpx = f.width * f.height / 1e6
        key = f"n{n}" if zones == 1 else f"n{n}_two_zones"
        out[key] = {"peak_rss_mb": round(rss), "seconds": round(seconds, 1), "mosaic_mpx": round(mpx, 1)}
        print(f"   combine {key}: {out[key]}", file=sys.stderr, flush=True)
    rss = [out[f"n{n}"]["peak_rss_mb"] for n in sizes]
    out["rss_ratio_largest_to_smallest"] = round(rss[-1] / rss[0], 2)
    out["goal"] = f"peak RSS under {RSS_LIMIT_MB} MB at every N and flat (largest N within 1.5x of the smallest)"
    out["goal_met"] = max(rss) < RSS_LIMIT_MB and rss[-1] <= 1.5 * rss[0]
    out["summary"] = ", ".join(f"N={n}: {out[f'n{n}']['peak_rss_mb']} MB, {out[f'n{n}']['seconds']:g} s" for n in sizes)
    if plot is not None:
        draw(out, sizes, plot)
    return out


def draw(result: dict[str, Any], sizes: tuple[int, ...], path: Path) -> None:
    """Peak RSS and time against N, on log-x axes, side by side."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    rss_ax, time_ax = fig.subplots(1, 2)
    rss_ax.plot(sizes, [result[f"n{n}"]["peak_rss_mb"] for n in sizes], "o-", label="combine peak RSS")
    rss_ax.axhline(RSS_LIMIT_MB, color="#d62728", linestyle="--", label=f"goal: {RSS_LIMIT_MB} MB")
    rss_ax.set(xscale="log", xlabel="partitions (N)", ylabel="peak RSS (MB)", ylim=(0, RSS_LIMIT_MB * 1.1))
    rss_ax.legend(frameon=False)
    time_ax.plot(sizes, [result[f"n{n}"]["seconds"] for n in sizes], "o-", label="combine wall time")
    time_ax.set(xscale="log", yscale="log", xlabel="partitions (N)", ylabel="seconds")
    time_ax.legend(frameon=False)
    fig.suptitle(f"combine: {TILE} x {TILE} px partitions into one COG")
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("FOLDER", "DEST"), help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    print_result("combine", run(tuple(int(s) for s in args.sizes.split(","))))


if __name__ == "__main__":
    main()
