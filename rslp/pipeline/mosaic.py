"""Partition GeoTIFFs -> one Cloud-Optimized GeoTIFF per job, in bounded memory.

Nothing here holds more than one block of pixels, one open source header, or one
line of the source index at a time, whatever the number of partitions:

1. Sources are read one by one (an iterable, never a list): each file's header gives
   its CRS and bounds, appended as one line to an index file per CRS (a *zone*: a
   continental request spans several UTM zones). A remote source is first copied to
   local scratch, because GDAL reads local files lazily and object stores have no
   local path; combine therefore needs scratch disk about the size of the partition
   files, not memory.
2. Each zone becomes a GDAL VRT, written line by line from its index: a virtual mosaic
   that GDAL reads window by window, keeping at most a small pool of sources open.
3. One zone (the usual case) is copied straight to a COG by GDAL's COG driver, which
   streams blocks and builds overviews (nearest: pixels are classes). Several zones
   are each warped (nearest) onto one grid in the target CRS, block by block, into a
   tiled scratch GeoTIFF, which is then copied to a COG. The target CRS is the
   postprocessor's ``crs`` or, by default, the first partition's.

GDAL's block cache is capped at :data:`GDAL_CACHE_MB`, so peak memory does not grow
with the job (bench/combine.py measures it).
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from xml.sax.saxutils import escape

from upath import UPath

#: GDAL's raster block cache during combine, in MB (GDAL's default is 5% of RAM).
GDAL_CACHE_MB = 256
#: Side of the COG's internal tiles and of the warp's blocks, in pixels.
BLOCK = 512
#: GDAL's names for numpy dtypes, for the VRT.
_GDAL_TYPES = {
    "uint8": "Byte",
    "int8": "Int8",
    "uint16": "UInt16",
    "int16": "Int16",
    "uint32": "UInt32",
    "int32": "Int32",
    "uint64": "UInt64",
    "int64": "Int64",
    "float32": "Float32",
    "float64": "Float64",
}


@dataclass
class Zone:
    """The sources that share one CRS: their union's bounds and an index file, one JSON line each."""

    crs: Any
    res: tuple[float, float]
    index: Path
    bounds: list[float] = field(default_factory=lambda: [math.inf, math.inf, -math.inf, -math.inf])
    count: int = 0

    def add(self, path: str, shape: tuple[int, int], bounds: Any, writer: TextIO) -> None:
        """Record one source: its local path, (width, height) and bounds (left, bottom, right, top)."""
        writer.write(json.dumps([path, *shape, *bounds]) + "\n")
        self.bounds = [
            min(self.bounds[0], bounds[0]),
            min(self.bounds[1], bounds[1]),
            max(self.bounds[2], bounds[2]),
            max(self.bounds[3], bounds[3]),
        ]
        self.count += 1

    def sources(self) -> Iterator[tuple[str, int, int, list[float]]]:
        """(path, width, height, bounds) of each source, read back from the index one line at a time."""
        with self.index.open() as f:
            for line in f:
                path, width, height, *bounds = json.loads(line)
                yield path, width, height, bounds


def _local_copy(source: UPath, scratch: Path, i: int) -> str:
    """A path GDAL can open: the file itself on local disk, else a copy in ``scratch``."""
    if source.protocol in ("", "file", "local"):
        return str(source.path)
    local = scratch / f"{i:07d}{source.suffix}"
    source.fs.get_file(source.path, str(local))
    return str(local)


def _index_sources(sources: Iterable[UPath], scratch: Path) -> tuple[list[Zone], dict[str, Any]]:
    """Zones in order of first appearance, and the band layout all sources must share."""
    import rasterio

    zones: dict[str, Zone] = {}
    writers: dict[str, TextIO] = {}
    layout: dict[str, Any] = {}
    try:
        for i, source in enumerate(sources):
            path = _local_copy(source, scratch, i)
            with rasterio.open(path) as src:
                bands = {"count": src.count, "dtype": src.dtypes[0]}
                if not layout:
                    layout = bands
                elif bands != layout:
                    raise ValueError(f"{source}: {bands} differs from the first partition's {layout}")
                key = src.crs.to_string()
                if key not in zones:
                    zones[key] = Zone(src.crs, src.res, scratch / f"zone{len(zones)}.jsonl")
                    writers[key] = zones[key].index.open("w")
                zones[key].add(path, (src.width, src.height), tuple(src.bounds), writers[key])
    finally:
        for writer in writers.values():
            writer.close()
    if not zones:
        raise ValueError("combine needs at least one partition file")
    return list(zones.values()), layout


def _write_vrt(zone: Zone, layout: dict[str, Any], nodata: float, dest: Path) -> None:
    """A VRT mosaic of the zone's sources on its own grid; later sources paint over earlier ones."""
    xres, yres = zone.res
    left, bottom, right, top = zone.bounds
    width, height = round((right - left) / xres), round((top - bottom) / yres)
    gdal_type = _GDAL_TYPES[layout["dtype"]]
    with dest.open("w") as f:
        f.write(f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">\n')
        f.write(f"<SRS>{escape(zone.crs.to_wkt())}</SRS>\n")
        f.write(f"<GeoTransform>{left!r}, {xres!r}, 0, {top!r}, 0, {-yres!r}</GeoTransform>\n")
        for band in range(1, layout["count"] + 1):
            f.write(f'<VRTRasterBand dataType="{gdal_type}" band="{band}">\n')
            f.write(f"<NoDataValue>{nodata!r}</NoDataValue>\n")
            for path, src_w, src_h, (s_left, s_bottom, s_right, s_top) in zone.sources():
                w, h = round((s_right - s_left) / xres), round((s_top - s_bottom) / yres)
                x, y = round((s_left - left) / xres), round((top - s_top) / yres)
                f.write(
                    f'<ComplexSource><SourceFilename relativeToVRT="0">{escape(path)}</SourceFilename>'
                    f"<SourceBand>{band}</SourceBand>"
                    f'<SrcRect xOff="0" yOff="0" xSize="{src_w}" ySize="{src_h}"/>'
                    f'<DstRect xOff="{x}" yOff="{y}" xSize="{w}" ySize="{h}"/>'
                    f"<NODATA>{nodata!r}</NODATA></ComplexSource>\n"
                )
            f.write("</VRTRasterBand>\n")
        f.write("</VRTDataset>\n")


def _target_grid(zones: list[Zone], crs: Any) -> tuple[Any, int, int]:
    """(transform, width, height) of a grid in ``crs`` covering every zone, snapped to its resolution."""
    from rasterio.transform import from_origin
    from rasterio.warp import calculate_default_transform, transform_bounds

    native = [z for z in zones if z.crs == crs]
    if native:
        xres, yres = native[0].res
    else:
        first = zones[0]
        size = (
            round((first.bounds[2] - first.bounds[0]) / first.res[0]),
            round((first.bounds[3] - first.bounds[1]) / first.res[1]),
        )
        t, _, _ = calculate_default_transform(first.crs, crs, size[0], size[1], *first.bounds)
        xres = yres = max(abs(t.a), abs(t.e))
    boxes = [transform_bounds(z.crs, crs, *z.bounds, densify_pts=21) for z in zones]
    left = math.floor(min(b[0] for b in boxes) / xres) * xres
    bottom = math.floor(min(b[1] for b in boxes) / yres) * yres
    right = math.ceil(max(b[2] for b in boxes) / xres) * xres
    top = math.ceil(max(b[3] for b in boxes) / yres) * yres
    return from_origin(left, top, xres, yres), round((right - left) / xres), round((top - bottom) / yres)


def _warp_zones(
    zones: list[Zone], vrts: list[Path], crs: Any, nodata: float, layout: dict[str, Any], dest: Path
) -> None:
    """Every zone warped (nearest) onto one grid in ``crs``, block by block, into a tiled GeoTIFF."""
    import numpy as np
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT
    from rasterio.warp import transform_bounds
    from rasterio.windows import from_bounds

    transform, width, height = _target_grid(zones, crs)
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": layout["count"],
        "dtype": layout["dtype"],
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": BLOCK,
        "blockysize": BLOCK,
        "compress": "deflate",
        "bigtiff": "if_safer",
    }
    with rasterio.open(dest, "w+", **profile) as dst:
        for zone, vrt in zip(zones, vrts, strict=True):
            area = from_bounds(*transform_bounds(zone.crs, crs, *zone.bounds, densify_pts=21), transform)
            with (
                rasterio.open(vrt) as src,
                WarpedVRT(
                    src,
                    crs=crs,
                    transform=transform,
                    width=width,
                    height=height,
                    nodata=nodata,
                    resampling=Resampling.nearest,
                ) as warped,
            ):
                for _, block in dst.block_windows(1):
                    if not _overlaps(block, area):
                        continue
                    painted = warped.read(window=block)
                    valid = painted != nodata
                    if valid.any():
                        canvas = dst.read(window=block)
                        dst.write(np.where(valid, painted, canvas), window=block)


def _overlaps(a: Any, b: Any) -> bool:
    return bool(
        a.col_off < b.col_off + b.width
        and b.col_off < a.col_off + a.width
        and a.row_off < b.row_off + b.height
        and b.row_off < a.row_off + a.height
    )


def _to_cog(source: Path, dest: Path) -> None:
    """Copy ``source`` to a Cloud-Optimized GeoTIFF with GDAL's COG driver (streamed, with overviews)."""
    import rasterio.shutil

    rasterio.shutil.copy(
        str(source),
        str(dest),
        driver="COG",
        COMPRESS="DEFLATE",
        BLOCKSIZE=BLOCK,
        RESAMPLING="NEAREST",
        OVERVIEW_RESAMPLING="NEAREST",
        BIGTIFF="IF_SAFER",
    )


def mosaic_to_cog(sources: Iterable[UPath], dest: Path, nodata: float, crs: str | None = None) -> None:
    """Write the mosaic of ``sources`` (GeoTIFFs, read once, in order) to the COG ``dest`` (local).

    Where partitions overlap, a later one's valid pixels win. Sources in a CRS other
    than the target (``crs``, default the first source's) are reprojected (nearest).
    """
    import rasterio
    from rasterio.crs import CRS

    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), tempfile.TemporaryDirectory(prefix="rslp-combine-") as tmp:
        scratch = Path(tmp)
        zones, layout = _index_sources(sources, scratch)
        vrts = [scratch / f"zone{i}.vrt" for i in range(len(zones))]
        for zone, vrt in zip(zones, vrts, strict=True):
            _write_vrt(zone, layout, nodata, vrt)
        target = CRS.from_user_input(crs) if crs else zones[0].crs
        if len(zones) == 1 and zones[0].crs == target:
            _to_cog(vrts[0], dest)
            return
        warped = scratch / "warped.tif"
        _warp_zones(zones, vrts, target, nodata, layout, warped)
        _to_cog(warped, dest)
