"""The fleet seam keeps beaker-py out of everything that does not talk to Beaker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


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


def test_fleet_status_and_stop_of_a_local_fleet_never_import_beaker_py(tmp_path: Path) -> None:
    """The commands module loads beaker-py only to build a spec or to call Beaker."""
    code = (
        "import sys; from rslp.launch import commands;"
        " commands.status('dev', backend='local'); commands.stop('dev', backend='local');"
        " print('beaker' in sys.modules)"
    )
    env = {**os.environ, "RSLP_FLEET_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.splitlines() == ["no workers of fleet dev", "no active workers of fleet dev", "False"]
