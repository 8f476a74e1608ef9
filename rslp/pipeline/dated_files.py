"""DatedLocalFiles: rslearn's LocalFiles whose items carry the acquisition date in their file name.

rslearn 0.1.19's LocalFiles gives its items no time range, so every window matches every
file whatever its time range, and a folder holding two months of the same place cannot
serve a job per month. This subclass reads a ``YYYY-MM-DD`` date from each file's name
(``tile_r0_c0_2026-01-15.tif``) and gives the item that day, ``[date, date + 1 day)`` in
UTC, as its time range; everything else (listing, the ``summary.json`` cache, matching
with the layer's query settings, ingest) is LocalFiles' own. Use it in dataset.json as::

    "data_source": {"class_path": "rslp.pipeline.dated_files.DatedLocalFiles",
                    "init_args": {"src_dir": "${CONFIG_DIR}/data/images"}}

A file without a date in its name is an error naming it: an undated file would silently
match every period.

LocalFiles caches its item list in ``summary.json`` in the folder and never notices new
files, but a folder that rolling runs read gains an acquisition every period: here the
cache is used only while it names exactly the raster files in the folder (one listing),
read through the folder it was written for: a cache written through another path to the
same folder (a symlink that is gone now) would send ingest to files that do not exist.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from rslearn.config import LayerType
from rslearn.data_sources.data_source import Item
from rslearn.data_sources.local_files import LocalFiles, RasterItem, VectorItem
from rslearn.utils.fsspec import get_relative_suffix, is_tmp_path
from rslearn.utils.geometry import STGeometry
from upath import UPath

_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})")


def acquisition_day(name: str) -> tuple[datetime, datetime]:
    """The UTC day named by the first ``YYYY-MM-DD`` in ``name`` (ValueError if there is none)."""
    match = _DATE.search(name)
    if match is None:
        raise ValueError(f"{name}: no acquisition date (YYYY-MM-DD) in the file name")
    day = datetime.strptime(match.group(1), "%Y-%m-%d").replace(tzinfo=UTC)
    return day, day + timedelta(days=1)


class DatedLocalFiles(LocalFiles):
    """LocalFiles whose items' time range is the day in their name (the file name without suffix)."""

    @functools.cache  # noqa: B019 - one data source per layer and process, as in LocalFiles
    def list_items(self) -> list[Item]:
        """LocalFiles' items, each with the time range of the date in its name."""
        dated: list[Item] = []
        for item in super().list_items():
            try:
                span = acquisition_day(item.name)
            except ValueError as e:
                raise ValueError(f"{self.src_dir}/{e}") from None
            geometry = STGeometry(item.geometry.projection, item.geometry.shp, span)
            if isinstance(item, RasterItem):
                dated.append(RasterItem(item.name, geometry, item.src_dir, item.spec))
            elif isinstance(item, VectorItem):
                dated.append(VectorItem(item.name, geometry, item.path_uri))
        return dated

    def _read_cached_items(self, cache_fname: UPath) -> list[dict[str, Any]] | None:
        """LocalFiles' cached item list, unless files were added or removed or it was written through another path."""
        cached: list[dict[str, Any]] | None = super()._read_cached_items(cache_fname)
        if cached is None or self.layer_type != LayerType.RASTER:
            return cached
        files = {
            get_relative_suffix(self.src_dir, p)
            for p in self.src_dir.glob("**/*.*")
            if not p.name.endswith(".json") and not is_tmp_path(p)
        }
        listed = {name for item in cached for name in item.get("spec", {}).get("fnames", [])}
        here = all(item.get("src_dir") == str(self.src_dir) for item in cached)
        return cached if listed == files and here else None
