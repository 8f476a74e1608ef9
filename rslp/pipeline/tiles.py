"""The job's shared tile store: each item (scene) of a data source is fetched once per job.

Every partition's rslearn dataset points its ``tile_store`` at ``JOB_ROOT/tiles/``
(:func:`shared_tile_store_config`, applied when create_windows writes the dataset's
config.json), so a scene that overlaps many partitions is stored once, in rslearn's
own layout (``tiles/<layer>/<item>/<bands>/``). Partitions ingest concurrently on
different workers, so two things make the sharing safe:

- **Claims, so an item is fetched once.** Before fetching, the ingest step claims each
  item it needs by creating ``tiles/<layer>/<item>.claim`` exclusively (``O_EXCL`` on
  local disk, a create-only write on gs://). It fetches only the items it claimed,
  releases them, then waits for the items other tasks hold and claims again whatever
  is still missing (a holder that failed released its claim; one that died leaves a
  claim that goes stale after ``claim_seconds``). A task never waits while holding a
  claim, so two partitions cannot deadlock. The data source skips items already in the
  store (rslearn's ``is_raster_ready``), so claiming a stored item costs no fetch.
- **Whole writes, so a reader never sees half an item.** :class:`SharedTileStore` writes
  each raster or vector into a private staging folder and renames it into place on
  local disk; a second writer's rename finds the item there and drops its copy. On
  object stores each object is written whole and rslearn writes its ``completed``
  marker last, so a reader (materialize) that waits for the marker sees whole objects.

Limits: ingest through :func:`fetch_once` runs in the task process, one data-source
call per round of claims (``hardware.workers`` does not apply to it); a fetch that
takes longer than ``claim_seconds`` may be repeated by a waiting task (harmless, only
slower); two tasks taking over the same stale claim at the same moment may both fetch
it (the same).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rslearn.tile_stores import DefaultTileStore
from upath import UPath

from rslp import log

if TYPE_CHECKING:
    from rslearn.dataset import Dataset, Window
    from rslearn.utils.geometry import PixelBounds, Projection

logger = log.get(__name__)

#: Who holds a claim: this process (a task process runs many tasks; its claims are its own).
OWNER = f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def shared_tile_store_config(tiles: UPath, configured: dict[str, Any] | None) -> dict[str, Any]:
    """The ``tile_store`` of a partition's dataset config: the job's shared store at ``tiles``.

    rslearn's default store (the usual case) becomes a :class:`SharedTileStore` with the
    same options; a dataset config that names another tile store class keeps it as it is.
    """
    default = "rslearn.tile_stores.default.DefaultTileStore"
    configured = configured or {"class_path": default}
    if configured.get("class_path") not in (default, "DefaultTileStore"):
        return configured
    init_args = {k: v for k, v in configured.get("init_args", {}).items() if k != "path_suffix"}
    # A path with a protocol (gs://) or an absolute local path: rslearn uses it as it is.
    init_args["path_suffix"] = str(tiles)
    return {"class_path": f"{__name__}.SharedTileStore", "init_args": init_args}


class SharedTileStore(DefaultTileStore):
    """rslearn's default tile store, shared by the partitions of a job: whole writes, item claims."""

    def __init__(
        self,
        path_suffix: str = "tiles",
        convert_rasters_to_cogs: bool = True,
        tile_size: int = 256,
        geotiff_options: dict[str, Any] | None = None,
        gcp_transform_method: str = "polynomial",
        claim_seconds: float = 600.0,
        poll_seconds: float = 0.5,
    ) -> None:
        """``claim_seconds``: a claim older than this is taken over (its holder is presumed dead)."""
        super().__init__(
            path_suffix=path_suffix,
            convert_rasters_to_cogs=convert_rasters_to_cogs,
            tile_size=tile_size,
            geotiff_options=geotiff_options or {},
            gcp_transform_method=gcp_transform_method,
        )
        self.claim_seconds = claim_seconds
        self.poll_seconds = poll_seconds

    # -- whole writes ---------------------------------------------------------------------

    def write_raster(
        self, layer_name: str, item: Any, bands: list[str], projection: Projection, bounds: PixelBounds, raster: Any
    ) -> None:
        size = getattr(getattr(raster, "array", raster), "nbytes", None)
        with self._staged(self._get_raster_dir(layer_name, item.name, bands), layer_name, item.name, size):
            super().write_raster(layer_name, item, bands, projection, bounds, raster)

    def write_raster_file(
        self,
        layer_name: str,
        item: Any,
        bands: list[str],
        fname: UPath,
        time_range: tuple[datetime, datetime] | None = None,
    ) -> None:
        size = fname.stat().st_size  # the data source fetched this file for this write
        with self._staged(self._get_raster_dir(layer_name, item.name, bands), layer_name, item.name, size):
            super().write_raster_file(layer_name, item, bands, fname, time_range)

    def write_vector(self, layer_name: str, item: Any, features: list[Any]) -> None:
        with self._staged(self._get_vector_dir(layer_name, item.name), layer_name, item.name, None):
            super().write_vector(layer_name, item, features)

    @contextmanager
    def _staged(self, final: UPath, layer_name: str, item_name: str, size: int | None) -> Iterator[None]:
        """Let the parent write under a private root, then move the result to ``final`` in one rename.

        Logs ``tile_stored`` with ``source_bytes`` (what the data source fetched for this
        write, where known): the benchmarks add these up to show each item is fetched once.
        """
        assert self.path is not None
        shared = self.path
        if shared.protocol not in ("", "file", "local"):
            yield  # object stores: whole-object writes, `completed` last
            logger.info("tile_stored", layer=layer_name, item=item_name, source_bytes=size)
            return
        staging = shared / f".staging-{OWNER}-{uuid.uuid4().hex[:8]}"
        self.path = staging
        try:
            yield
            written = staging / str(final)[len(str(shared)) + 1 :]
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(written.path, final.path)
            except OSError:  # another writer put the same item there first: keep theirs
                logger.info("tile_already_stored", layer=layer_name, item=item_name, source_bytes=size)
            else:
                logger.info("tile_stored", layer=layer_name, item=item_name, source_bytes=size)
        finally:
            self.path = shared
            shutil.rmtree(staging.path, ignore_errors=True)

    # -- claims ---------------------------------------------------------------------------

    def _claim_path(self, layer_name: str, item_name: str) -> UPath:
        assert self.path is not None
        return self.path / layer_name / f"{item_name}.claim"

    def claim(self, layer_name: str, item_name: str) -> bool:
        """Claim the item for this process; False if another live task holds it."""
        path = self._claim_path(layer_name, item_name)
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):  # a second try after removing a stale claim
            try:
                with path.open("xb") as f:
                    f.write(json.dumps({"owner": OWNER, "at": time.time()}).encode())
                return True
            except FileExistsError:
                holder = self._holder(path)
                if holder is not None and holder.get("owner") == OWNER:
                    return True
                if holder is not None and time.time() - float(holder.get("at", 0)) < self.claim_seconds:
                    return False
                logger.warning("stale_claim_taken_over", layer=layer_name, item=item_name, holder=holder)
                path.unlink(missing_ok=True)
        return False

    def release(self, layer_name: str, item_name: str) -> None:
        self._claim_path(layer_name, item_name).unlink(missing_ok=True)

    def wait_released(self, layer_name: str, item_names: list[str]) -> None:
        """Block until none of the items is held by a live task."""
        for name in item_names:
            path = self._claim_path(layer_name, name)
            while (holder := self._holder(path)) is not None:
                if time.time() - float(holder.get("at", 0)) >= self.claim_seconds:
                    return  # stale: the caller claims it over
                time.sleep(self.poll_seconds)

    def _holder(self, path: UPath) -> dict[str, Any] | None:
        """The claim at ``path``, or None if there is none; a claim being written counts as fresh."""
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        try:
            return dict(json.loads(text))
        except ValueError:
            return {"owner": "?", "at": time.time()}


def fetch_once(dataset: Dataset, store: SharedTileStore, windows: list[Window], hw_retry: dict[str, Any]) -> None:
    """Ingest the items of ``windows`` into the shared store, each fetched by one task only."""
    from rslearn.dataset.manage import retry
    from rslearn.tile_stores import get_tile_store_with_layer

    for layer_name, layer_cfg in dataset.layers.items():
        if layer_cfg.data_source is None or not layer_cfg.data_source.ingest:
            continue
        data_source = layer_cfg.instantiate_data_source(dataset.path)
        store_name = layer_cfg.alias or layer_name
        layer_store = get_tile_store_with_layer(store, layer_name, layer_cfg)
        pending: dict[Any, list[Any]] = {}
        for window in windows:
            layer_data = window.load_layer_datas().get(layer_name)
            if layer_data is None:
                continue
            for group in layer_data.serialized_item_groups:
                for serialized in group:
                    pending.setdefault(data_source.deserialize_item(serialized), []).append(window.get_geometry())
        while pending:
            mine = [item for item in pending if store.claim(store_name, item.name)]
            try:
                if mine:
                    fetch = functools.partial(
                        data_source.ingest, tile_store=layer_store, items=mine, geometries=[pending[i] for i in mine]
                    )
                    retry(
                        fn=fetch,
                        retry_max_attempts=hw_retry["retry_max_attempts"],
                        retry_backoff=hw_retry["retry_backoff"],
                    )
            finally:
                for item in mine:
                    store.release(store_name, item.name)
            for item in mine:
                del pending[item]
            if pending:
                logger.info("waiting_for_items", layer=layer_name, items=len(pending))
                store.wait_released(store_name, [item.name for item in pending])
