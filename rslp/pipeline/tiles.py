"""The job's shared tile store: each item (scene) of a data source is fetched once per job.

Every partition's rslearn dataset points its ``tile_store`` at ``JOB_ROOT/tiles/``
(:func:`shared_tile_store_config`, applied when create_windows writes the dataset's
config.json), so a scene that overlaps many partitions is stored once, in rslearn's
own layout (``tiles/<layer>/<item>/<bands>/``). Partitions ingest concurrently on
different workers, so two things make the sharing safe:

- **Claims, so an item is fetched once.** Before fetching, the ingest step claims each
  item it needs (:mod:`rslp.claims`: created only if absent, kept fresh by a thread,
  stale ``claim_seconds`` after its holder's last sign of life by the store's clock,
  given up on finish, failure or SIGTERM) as ``tiles/.claims/<hash>.claim``; the name
  hashes layer and item, so no item name becomes a path. It fetches only the items it
  claimed, gives them up, then waits (at most ``max_wait_seconds``) for the items
  other tasks hold and claims again whatever is still missing. A task never waits while
  holding a claim, so two partitions cannot deadlock. The data source skips items
  already in the store (rslearn's ``is_raster_ready``), so claiming a stored item costs
  no fetch.
- **Whole writes, so a reader never sees half an item.** :class:`SharedTileStore` writes
  each raster or vector into a private staging folder and renames it into place on
  local disk; a second writer's rename finds the item there and drops its copy. On
  object stores each object is written whole and rslearn writes its ``completed``
  marker last, so a reader (materialize) that waits for the marker sees whole objects.

Limits: ingest through :func:`fetch_once` runs in the task process, one data-source
call per round of claims (``hardware.workers`` does not apply to it); the claims' own
limits (:mod:`rslp.claims`) may let two tasks fetch one item, which is harmless, only
slower.
"""

from __future__ import annotations

import functools
import hashlib
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
from rslp.claims import OWNER, Claims
from rslp.storage import is_local

if TYPE_CHECKING:
    from rslearn.dataset import Dataset, Window
    from rslearn.utils.geometry import PixelBounds, Projection

logger = log.get(__name__)

#: The folder under the tile store's root where claims live, one file per (layer, item).
CLAIMS = ".claims"


def shared_tile_store_config(tiles: UPath, configured: dict[str, Any] | None) -> dict[str, Any]:
    """The ``tile_store`` of a partition's dataset config: the job's shared store at ``tiles``.

    rslearn's default store (the usual case) becomes a :class:`SharedTileStore` with the
    same options; one that names :class:`SharedTileStore` itself (to set its claim options)
    gets the job's path; a dataset config that names another tile store class keeps it as it is.
    """
    default = "rslearn.tile_stores.default.DefaultTileStore"
    configured = configured or {"class_path": default}
    if configured.get("class_path") not in (default, "DefaultTileStore", f"{__name__}.SharedTileStore"):
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
        claim_seconds: float = 15.0,
        poll_seconds: float = 0.5,
        max_wait_seconds: float = 1800.0,
    ) -> None:
        """The options of rslearn's default store, plus how claims behave.

        ``claim_seconds``: a claim's lease (its holder rewrites it every third of it; one
        not rewritten for this long is taken over). ``max_wait_seconds``: the longest a
        task waits for items other tasks hold before it fails (and is retried).
        """
        super().__init__(
            path_suffix=path_suffix,
            convert_rasters_to_cogs=convert_rasters_to_cogs,
            tile_size=tile_size,
            geotiff_options=geotiff_options or {},
            gcp_transform_method=gcp_transform_method,
        )
        self.claim_seconds = claim_seconds
        self.claims = Claims(claim_seconds)
        self.poll_seconds = poll_seconds
        self.max_wait_seconds = max_wait_seconds

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
        if not is_local(shared):
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

    # -- claims (the mechanics are rslp.claims's) ----------------------------------------

    def _claim_path(self, layer_name: str, item_name: str) -> UPath:
        """One flat folder, one hashed name per (layer, item): no item name becomes a path."""
        assert self.path is not None
        digest = hashlib.sha256(f"{layer_name}\0{item_name}".encode()).hexdigest()[:40]
        return self.path / CLAIMS / f"{digest}.claim"

    def claim(self, layer_name: str, item_name: str) -> bool:
        """Claim the item for this process; False if a live holder has it (its claim is fresh)."""
        return self.claims.take(self._claim_path(layer_name, item_name), {"layer": layer_name, "item": item_name})

    @contextmanager
    def holding(self, layer_name: str, item_names: list[str]) -> Iterator[list[str]]:
        """Claim what nobody holds; yield those names; keep their claims fresh until the block ends.

        The claims go stale within ``claim_seconds`` of their holder's death, and are
        given up when the block ends or on a task process's SIGTERM (:meth:`Claims.holding`).
        """
        wanted = {self._claim_path(layer_name, n): {"layer": layer_name, "item": n} for n in item_names}
        with self.claims.holding(wanted) as mine:
            taken = set(mine)
            yield [n for n in item_names if self._claim_path(layer_name, n) in taken]

    def wait_released(self, layer_name: str, item_names: list[str]) -> None:
        """Block until none of the items has a fresh claim; RuntimeError past ``max_wait_seconds``."""
        deadline = time.monotonic() + self.max_wait_seconds
        for name in item_names:
            path = self._claim_path(layer_name, name)
            while self.claims.left(path) is not None:
                if time.monotonic() >= deadline:
                    raise RuntimeError(
                        f"tile store item {layer_name}/{name} was still claimed by another task after "
                        f"{self.max_wait_seconds:.0f} s (claim {path}); the task is retried"
                    )
                time.sleep(self.poll_seconds)


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
            with store.holding(store_name, [item.name for item in pending]) as names:
                mine = [item for item in pending if item.name in names]
                if mine:
                    fetch = functools.partial(
                        data_source.ingest, tile_store=layer_store, items=mine, geometries=[pending[i] for i in mine]
                    )
                    retry(
                        fn=fetch,
                        retry_max_attempts=hw_retry["retry_max_attempts"],
                        retry_backoff=hw_retry["retry_backoff"],
                    )
            for item in mine:
                del pending[item]
            if pending:
                logger.info("waiting_for_items", layer=layer_name, items=len(pending))
                store.wait_released(store_name, [item.name for item in pending])
