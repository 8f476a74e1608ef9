"""rslearn's dataset operations, run in-process and checked against what they wrote.

Each partition is its own rslearn dataset (``config.json``, ``windows/``); the tile
store is the job's, shared by its partitions (:mod:`rslp.pipeline.tiles`), so a scene
that overlaps many partitions is fetched and stored once. Prepare, ingest and materialize call
rslearn's own handlers through ``apply_on_windows`` (so ``hardware.workers`` and
``batch_size`` mean what they mean in rslearn) with ``ignore_errors`` off, and then
verify the result on disk, because rslearn reports success for windows it skipped:

- prepare: every window has items.json for every data-source layer. A window whose
  layers matched no item is *uncovered*: it is left out of the later steps, and a
  partition with no covered window at all is a :class:`~rslp.errors.PermanentError`
  (the request is outside the imagery).
- ingest: every item of every covered window is in the tile store. With the job's
  shared store, ingest claims items so that only one task fetches each
  (:func:`~rslp.pipeline.tiles.fetch_once`); with a tile store the dataset config
  names itself, rslearn's IngestHandler runs as it is.
- materialize: every data-source layer of every covered window is marked completed.

A failed check raises RuntimeError: the worker retries the task, and each operation
skips what is already done, so a retry finishes the job rather than redoing it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from rslearn.dataset import Dataset, Window
from upath import UPath

from rslp import log
from rslp.errors import PermanentError
from rslp.pipeline.config import Hardware
from rslp.pipeline.tiles import SharedTileStore, fetch_once
from rslp.storage import is_local, write_json_atomic

if TYPE_CHECKING:
    from rslearn.utils.geometry import STGeometry

logger = log.get(__name__)


def open_dataset(root: UPath) -> Dataset:
    """The partition's rslearn dataset (its config.json is already resolved and valid)."""
    return Dataset(root)


def create_windows(root: UPath, dataset_config: dict[str, Any], group: str, parts: list[STGeometry]) -> int:
    """Write the resolved dataset config and one window per part; returns the window count.

    Names are ``w00000``... in partitioner order, so a rerun rewrites the same windows.
    """
    write_json_atomic(root / "config.json", _with_local_sources_anchored(dataset_config, root))
    dataset = open_dataset(root)
    names = []
    for i, part in enumerate(parts):
        if part.projection.crs.is_geographic:
            raise PermanentError(
                f"window_partitioner returned a part in {part.projection.crs} (geographic); "
                "windows need a projected CRS in pixel units (use GridPartitioner or FixedWindowPartitioner)"
            )
        minx, miny, maxx, maxy = part.shp.bounds
        bounds = (round(minx), round(miny), round(maxx), round(maxy))
        name = f"w{i:05d}"
        Window(
            storage=dataset.storage,
            group=group,
            name=name,
            projection=part.projection,
            bounds=bounds,
            time_range=part.time_range,
        ).save()
        names.append(name)
    written = {w.name for w in dataset.load_windows(groups=[group])}
    if missing := sorted(set(names) - written):
        raise RuntimeError(f"{len(missing)} windows were saved but cannot be loaded back, e.g. {missing[0]}")
    return len(names)


def _with_local_sources_anchored(dataset_config: dict[str, Any], root: UPath) -> dict[str, Any]:
    """The config with each absolute local ``src_dir`` as a ``file://`` URL when ``root`` is remote.

    rslearn joins a data source's ``src_dir`` onto the dataset's own path unless it has a
    protocol, so ``/data/images`` under a gs:// dataset would become
    ``gs://bucket/.../data/images`` and match nothing (every window uncovered).
    """
    if is_local(root):
        return dataset_config
    config = json.loads(json.dumps(dataset_config))
    for layer in config.get("layers", {}).values():
        init_args = (layer.get("data_source") or {}).get("init_args") or {}
        src_dir = init_args.get("src_dir")
        if isinstance(src_dir, str) and "://" not in src_dir and src_dir.startswith("/"):
            init_args["src_dir"] = f"file://{src_dir}"
    return config


def _source_layers(dataset: Dataset) -> dict[str, Any]:
    return {name: cfg for name, cfg in dataset.layers.items() if cfg.data_source is not None}


def _apply(handler: Callable[..., Any], dataset: Dataset, group: str, names: list[str], hw: Hardware) -> list[Any]:
    from rslearn.main import apply_on_windows

    if not names:  # rslearn reads an empty name list as "every window"
        return []
    return list(
        apply_on_windows(
            handler,
            dataset,
            group=group,
            names=names,
            workers=hw.workers,
            load_workers=hw.load_workers,
            batch_size=hw.batch_size,
        )
    )


def _retry_args(hw: Hardware) -> dict[str, Any]:
    return {
        "ignore_errors": False,
        "retry_max_attempts": hw.retry_max_attempts,
        "retry_backoff": timedelta(seconds=hw.retry_backoff_seconds),
    }


def covered_windows(dataset: Dataset, windows: Iterable[Window]) -> tuple[list[Window], list[Window]]:
    """(covered, uncovered): covered windows matched at least one item in every data-source layer.

    Raises RuntimeError if a window was never prepared: prepare said it was.
    """
    covered, uncovered = [], []
    layers = _source_layers(dataset)
    for window in windows:
        datas = window.load_layer_datas()
        if missing := [name for name in layers if name not in datas]:
            raise RuntimeError(f"window {window.name} has no prepared items for layers {missing}")
        if all(datas[name].serialized_item_groups for name in layers):
            covered.append(window)
        else:
            uncovered.append(window)
    return covered, uncovered


def prepare(root: UPath, group: str, hw: Hardware, request: str, partition: str) -> tuple[int, int]:
    """Look up the items of every window; returns (covered, uncovered) window counts."""
    from rslearn.main import PrepareHandler

    dataset = open_dataset(root)
    windows = dataset.load_windows(groups=[group])
    started = time.monotonic()
    _apply(PrepareHandler(force=False, **_retry_args(hw)), dataset, group, [w.name for w in windows], hw)
    covered, uncovered = covered_windows(dataset, windows)
    if not covered:
        # Class paths only, never init_args: rslearn has resolved their ${RSLP_*} values.
        sources = "; ".join(f"layers.{n}: {c.data_source.class_path}" for n, c in _source_layers(dataset).items())
        span = windows[0].time_range if windows else None
        period = f" in {span[0].isoformat()}/{span[1].isoformat()}" if span else ""
        raise PermanentError(
            f"{request}: partition {partition}: none of its {len(windows)} windows has imagery{period} "
            f"({sources}); is the request outside the imagery?"
        )
    logger.info(
        "prepared",
        windows=len(windows),
        covered=len(covered),
        uncovered=len(uncovered),
        seconds=time.monotonic() - started,
    )
    return len(covered), len(uncovered)


def ingest(root: UPath, group: str, hw: Hardware) -> int:
    """Copy the items of the covered windows into the tile store; returns the window count."""
    from rslearn.dataset.manage import is_window_ingested
    from rslearn.main import IngestHandler

    dataset = open_dataset(root)
    covered, _ = covered_windows(dataset, dataset.load_windows(groups=[group]))
    started = time.monotonic()
    store = dataset.get_tile_store()
    if isinstance(store, SharedTileStore):  # the job's store: each item fetched by one task only
        fetch_once(dataset, store, covered, _retry_args(hw))
    else:
        _apply(IngestHandler(**_retry_args(hw)), dataset, group, [w.name for w in covered], hw)
    layers = [name for name, cfg in _source_layers(dataset).items() if cfg.data_source.ingest]
    for window in covered:
        if missing := [name for name in layers if not is_window_ingested(dataset, window, check_layer_name=name)]:
            raise RuntimeError(f"ingest reported success but window {window.name} lacks items of layers {missing}")
    logger.info("ingested", windows=len(covered), layers=layers, seconds=time.monotonic() - started)
    return len(covered)


def materialize(root: UPath, group: str, hw: Hardware) -> int:
    """Write each covered window's layers from the tile store; returns the window count."""
    from rslearn.main import MaterializeHandler

    dataset = open_dataset(root)
    covered, _ = covered_windows(dataset, dataset.load_windows(groups=[group]))
    started = time.monotonic()
    _apply(MaterializeHandler(**_retry_args(hw)), dataset, group, [w.name for w in covered], hw)
    layers = list(_source_layers(dataset))
    for window in covered:
        if missing := [name for name in layers if not window.is_layer_completed(name)]:
            raise RuntimeError(f"materialize reported success but window {window.name} lacks layers {missing}")
    logger.info("materialized", windows=len(covered), layers=layers, seconds=time.monotonic() - started)
    return len(covered)
