"""The fleet seam keeps beaker-py out of everything that does not talk to Beaker."""

from __future__ import annotations

import subprocess
import sys


def _loads_beaker(*modules: str) -> bool:
    """Whether importing ``modules`` in a fresh interpreter loads beaker-py."""
    code = f"import sys; import {', '.join(modules)}; print('beaker' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip() == "True"


def test_the_local_backend_and_the_seam_never_import_beaker_py() -> None:
    assert not _loads_beaker("rslp.launch.local", "rslp.launch.fleet", "rslp.errors")


def test_the_beaker_backend_does_load_it() -> None:
    """The check above can tell: importing the Beaker backend loads beaker-py."""
    assert _loads_beaker("rslp.launch.beaker")
