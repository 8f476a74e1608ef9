"""The README's "First ten minutes on the emulator" runs as written.

The fenced block is read from README.md and run by bash (``-e``: every command must
succeed) in a folder laid out like the repository root, against this session's test
emulator: the only change is the emulator's address, 127.0.0.1:8085 in the README and a
free port here, so parallel test runs never share one.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rslp.pipeline.demo import DEMO_DIR, DEMO_SCENE, ensure_scene

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SECTION = "## First ten minutes on the emulator"
README_HOST = "127.0.0.1:8085"


def readme_block() -> str:
    """The first ```bash block of the section."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(SECTION) :]
    match = re.search(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    assert match, f"no ```bash block under {SECTION!r}"
    return match.group(1)


def test_the_readme_emulator_section_runs_as_written(emulator_host: str, tmp_path: Path) -> None:
    block = readme_block()
    assert f"export PUBSUB_EMULATOR_HOST={README_HOST}" in block
    ensure_scene(DEMO_SCENE, DEMO_DIR / "data")  # the section starts after `make demo`, which makes it
    (tmp_path / "tasks").symlink_to(REPO / "tasks")  # a repository root whose runs/ is this test's own
    venv_bin = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}",  # `. .venv/bin/activate`
        "PYTHONPATH": str(REPO),
        "WANDB_MODE": "disabled",
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.replace(README_HOST, emulator_host)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert "tasks published" in done.stdout and "no dead letters" in done.stdout
    assert re.search(r"^\s*observe\b.*\b1\b", done.stdout, flags=re.MULTILINE), done.stdout
    assert (tmp_path / "runs" / "first-job" / "output" / "prediction.tif").exists()
