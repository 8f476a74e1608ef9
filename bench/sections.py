"""A benchmark's own section of bench/RESULTS.md, written by ``python -m bench.<name>`` alone.

``make bench`` (bench/run_all.py) rewrites the whole file; a benchmark run by itself
replaces only its own section (from its ``## title`` line to the next ``## `` heading),
or appends it at the end, and leaves every other section as it was.
"""

from __future__ import annotations

import importlib
import re
import time
from pathlib import Path
from typing import Any

from bench.harness import REPO

RESULTS = REPO / "bench" / "RESULTS.md"


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages (the machine is shared: every section says what they were)."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def render(title: str, name: str, result: dict[str, Any], seconds: float, loads: str) -> str:
    """The section of ``bench.<name>``: title, command, docstring, its Markdown figures, goal and load."""
    module = importlib.import_module(f"bench.{name}")
    met = "yes" if result.get("goal_met") else "**no**"
    lines = [
        f"## {title}",
        "",
        f"`python -m bench.{name}` ({seconds:.0f} s, {time.strftime('%Y-%m-%d %H:%M %Z')}; "
        f"load average before / after: {loads})",
        "",
        (module.__doc__ or "").strip(),
        "",
        *module.markdown(result),
        "",
        f"Summary: {result['summary']}.",
    ]
    if "goal" in result:
        lines.append(f"Goal: {result['goal']}. Met: {met}.")
    return "\n".join(lines) + "\n"


def write(title: str, text: str, path: Path = RESULTS) -> None:
    """Replace the section called ``title`` in ``path`` with ``text``, or append it at the end."""
    old = path.read_text() if path.exists() else ""
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(old):
        new = pattern.sub(lambda _: text.rstrip("\n") + "\n\n", old, count=1).rstrip("\n") + "\n"
    else:
        new = f"{old.rstrip(chr(10))}\n\n{text}"
    path.write_text(new)


def main(title: str, name: str, **kwargs: Any) -> dict[str, Any]:
    """Run ``bench.<name>.run(**kwargs)`` and write its section; returns its result."""
    before = loadavg()
    started = time.monotonic()
    result: dict[str, Any] = importlib.import_module(f"bench.{name}").run(**kwargs)
    write(title, render(title, name, result, time.monotonic() - started, f"{before} / {loadavg()}"))
    return result
