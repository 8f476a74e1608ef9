"""A data source whose fetches take time: a test's stand-in for a slow download.

Tests that kill a worker in the middle of ingest need it to be there when the signal
comes. :class:`GatedLocalFiles` is the demo's data source, except that ``ingest``
waits while the file ``gate`` exists (a test holds every fetch open, signals the
workers it chose, then removes the gate) and then takes ``fetch_seconds`` more, as a
real download of a scene does. Used by tests only; never by a pipeline.
"""

from __future__ import annotations

import time
from typing import Any

from rslearn.data_sources.data_source import DataSourceContext
from rslearn.tile_stores import TileStoreWithLayer
from upath import UPath

from rslp.pipeline.dated_files import DatedLocalFiles

#: The longest a fetch waits at its gate: a forgotten gate fails the test, it does not hang it.
GATE_PATIENCE = 300.0


class GatedLocalFiles(DatedLocalFiles):
    """:class:`DatedLocalFiles` whose ``ingest`` starts once ``gate`` is gone and lasts ``fetch_seconds`` more."""

    def __init__(
        self,
        src_dir: str,
        gate: str | None = None,
        fetch_seconds: float = 0.0,
        layer_type: Any = None,
        context: DataSourceContext | None = None,
    ) -> None:
        super().__init__(src_dir, layer_type=layer_type, context=context or DataSourceContext())
        self.gate = UPath(gate) if gate else None
        self.fetch_seconds = fetch_seconds

    def ingest(self, tile_store: TileStoreWithLayer, items: list[Any], geometries: list[Any]) -> None:
        deadline = time.monotonic() + GATE_PATIENCE
        while self.gate is not None and self.gate.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gate {self.gate} was not removed within {GATE_PATIENCE:.0f} s")
            time.sleep(0.05)
        super().ingest(_SlowWrites(tile_store, self.fetch_seconds), items, geometries)


class _SlowWrites(TileStoreWithLayer):
    """A layer's tile store whose raster writes (fetches of items not yet stored) each take ``seconds`` more."""

    def __init__(self, store: TileStoreWithLayer, seconds: float) -> None:
        super().__init__(store.tile_store, store.layer_name)
        self._seconds = seconds

    def write_raster_file(self, *args: Any, **kwargs: Any) -> None:
        time.sleep(self._seconds)
        super().write_raster_file(*args, **kwargs)
