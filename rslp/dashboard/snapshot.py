"""The dashboard's one reader: refreshes the view in the background and keeps only the last one.

A request never reads the job root: it gets the last view's bytes (JSON, and gzip for
a browser that accepts it), made by one thread every ``interval`` seconds. A refresh of
a 100k-partition job costs ``rslp status``'s listing (seconds); the next one waits at
least as long again, so a big job's server is busy reading at most half the time.
Memory holds one view and the map's layout (16 bytes a partition), whatever the job's
age or the number of pages open.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import structlog
from upath import UPath

from rslp.dashboard.model import job_view, layout, root_view
from rslp.errors import typed
from rslp.jobroot import JobRoot
from rslp.status.model import collect

logger = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Encoded:
    """A response body, plain and gzipped (compressed once per refresh, not per request)."""

    body: bytes
    gzipped: bytes

    @classmethod
    def of(cls, body: bytes) -> Encoded:
        return cls(body, gzip.compress(body, compresslevel=5))


class Snapshots:
    """The last view of one job (``job_root``) or of a rolling root's periods (``root``)."""

    def __init__(self, job_root: str | None = None, root: str | None = None, interval: float = 5.0) -> None:
        if (job_root is None) == (root is None):
            raise ValueError("give --job_root (one job) or --root (a rolling root's periods), not both or neither")
        self.job_root, self.root, self.interval = job_root, root, interval
        self.view: Encoded | None = None
        self.layout: Encoded | None = None
        #: The prediction's thumbnail, made once: None before the job is done, empty if it cannot be read.
        self.thumbnail: bytes | None = None
        #: Output name -> its path: the only files the server hands out.
        self.files: dict[str, UPath] = {}
        self._since: dict[str, float] = {}
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dashboard-refresh", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the first view exists (or ``timeout``); whether it does."""
        return self._ready.wait(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.refresh()
            spent = time.monotonic() - started
            self._stop.wait(max(self.interval, spent))

    def refresh(self) -> None:
        """Read once and replace the view; an error becomes the view's ``error`` (the last data stays)."""
        started = time.monotonic()
        try:
            body = json.dumps(self._read(started), allow_nan=False, default=str)
        except Exception as e:  # noqa: BLE001 - a page that says why beats a server that died
            logger.warning("dashboard_refresh_failed", error=typed(e))
            old = json.loads(self.view.body) if self.view else {"kind": "loading"}
            body = json.dumps({**old, "error": typed(e)}, default=str)
        self.view = Encoded.of(body.encode())
        self._ready.set()

    def _read(self, started: float) -> dict[str, Any]:
        if self.root is not None:
            view = root_view(self.root)
            view["refresh_seconds"] = round(time.monotonic() - started, 3)
            view["time"] = time.time()
            return view
        assert self.job_root is not None
        job = collect(self.job_root)
        if self.layout is None:
            self.layout = Encoded.of(layout(job.manifest))
        now = time.time()
        self._since = {r.task_id: self._since.get(r.task_id, now) for r in job.running}
        outputs = self._outputs() if job.finished else []
        return job_view(job, self._since, outputs, bool(self.thumbnail), time.monotonic() - started)

    def _outputs(self) -> list[dict[str, Any]]:
        """The finished job's outputs that exist (a stat each), and its thumbnail, made once."""
        from rslp.pipeline.job import Job

        if not self.files:
            assert self.job_root is not None
            job = Job.load(self.job_root)
            paths = [*job.output_paths(), JobRoot(job.root).output_dir / "observe.png"]
            self.files = {p.name: p for p in paths}
        out = []
        for name, path in self.files.items():
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            out.append({"name": name, "bytes": size})
            if self.thumbnail is None and path.suffix == ".tif":
                self.thumbnail = self._thumbnail(str(path))
        return out

    @staticmethod
    def _thumbnail(path: str) -> bytes:
        """The thumbnail of ``path``; empty (none shown, not tried again) if GDAL cannot read it from here."""
        import rasterio.errors

        from rslp.dashboard.thumbnail import thumbnail_png

        try:
            return thumbnail_png(path)
        except (rasterio.errors.RasterioError, OSError) as e:
            logger.warning("dashboard_thumbnail_failed", path=path, error=typed(e))
            return b""
