"""The code before a change, checked out beside this one, so a benchmark compares both in one run.

A benchmark that claims "N times faster than before" measures the old code in the same
run, on the same machine at the same load: :func:`baseline_tree` checks the baseline
commit out into a temporary git worktree (detached, removed afterwards), and a child
process run with ``PYTHONPATH`` set to it imports the old ``rslp``. Its working
directory must not be this repository, or ``python -m`` would import the new one.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.harness import REPO

#: The commit before the lead's per-task speedups (per-zone UTM cache, cached pipeline.yaml, publish log).
BASELINE = "175f73b"


def short(commit: str) -> str:
    """``commit`` as git's short hash (for the report)."""
    out = subprocess.run(["git", "rev-parse", "--short", commit], capture_output=True, text=True, cwd=REPO, check=True)
    return out.stdout.strip()


@contextmanager
def baseline_tree(commit: str = BASELINE) -> Iterator[Path]:
    """A detached checkout of ``commit`` in a temporary folder, removed (and unregistered) afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="rslp-baseline-")) / "tree"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(folder), commit], capture_output=True, cwd=REPO, check=True
    )
    try:
        yield folder
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(folder)], capture_output=True, cwd=REPO)
        shutil.rmtree(folder.parent, ignore_errors=True)
