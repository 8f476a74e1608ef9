"""Debian's Chromium, headless, as the browser tests and the dashboard benchmark start it.

Browser downloads do not work on these machines (nor on many clusters), so Playwright
drives the system's ``chromium`` package instead of a browser of its own. Without the
background-networking flags, Chromium keeps trying to reach Google's hosts, and a
closed network refuses each try.
"""

from __future__ import annotations

from pathlib import Path

#: Debian's package puts the browser here (``apt-get install chromium``).
CHROMIUM = Path("/usr/bin/chromium")
#: Headless, no sandbox (tests run as root), and no network of its own.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
