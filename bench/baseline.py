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
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.harness import REPO

#: Run a script with ``rslp`` importable only from ``PYTHONPATH``: this repository's editable install
#: adds an import finder that answers for any ``rslp.*`` module missing from the code on ``PYTHONPATH``,
#: so a child running the baseline would import a module that only the new code has, instead of
#: learning that it is not there. The prelude drops that finder, then runs the script as ``__main__``.
_ONLY_THIS_CODE = (
    "import runpy, sys; "
    "sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, '__module__', '').startswith('__editable__')]; "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)

#: The commit before the lead's per-task speedups (per-zone UTM cache, cached pipeline.yaml, publish log).
BASELINE = "175f73b"


def short(commit: str) -> str:
    """``commit`` as git's short hash (for the report)."""
    out = subprocess.run(["git", "rev-parse", "--short", commit], capture_output=True, text=True, cwd=REPO, check=True)
    return out.stdout.strip()


def child_command(script: str | Path, *args: str) -> list[str]:
    """The command that runs ``script`` with ``args`` importing ``rslp`` from ``PYTHONPATH`` only."""
    return [sys.executable, "-c", _ONLY_THIS_CODE, str(script), *args]


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
