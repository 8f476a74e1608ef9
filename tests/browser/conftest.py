"""A real headless Chromium (Debian's package) driven by Playwright, and a dashboard to point it at.

Playwright's own browser downloads are never used: it launches /usr/bin/chromium.
Without Chromium these tests skip, saying why; with CI=true they fail instead, so CI
cannot pass without having run them (.ci/run installs the package).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rslp.dashboard.server import DashboardServer
from rslp.dashboard.snapshot import Snapshots
from rslp.testing.chromium import CHROMIUM, CHROMIUM_ARGS


def _unavailable(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the browser tests, but {why}")
    pytest.skip(why)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium for the session."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[dev]')")
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Page:
    """A browser tab that records console errors and uncaught exceptions."""

    def __init__(self, tab: Any) -> None:
        self.tab = tab
        self.errors: list[str] = []
        tab.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        tab.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    tab = browser.new_page(viewport={"width": 1280, "height": 900})
    yield Page(tab)
    tab.close()


@pytest.fixture
def dashboard() -> Iterator[Any]:
    """``dashboard(job_root)`` (or ``dashboard(root=R)``): a server reading every half second; closed after the test."""
    started: list[tuple[DashboardServer, Snapshots]] = []

    def start(job_root: Path | None = None, root: Path | None = None) -> DashboardServer:
        snapshots = Snapshots(
            job_root=None if job_root is None else str(job_root), root=None if root is None else str(root), interval=0.5
        )
        snapshots.start()
        assert snapshots.wait_ready(60)
        server = DashboardServer(snapshots, "127.0.0.1", 0, None)
        server.start()
        started.append((server, snapshots))
        return server

    yield start
    for server, snapshots in started:
        server.close()
        snapshots.stop()
