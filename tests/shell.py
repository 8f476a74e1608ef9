"""A user's shell, for tests that run the commands the CLI prints exactly as printed."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: A printed hint: two spaces, what it does, a colon, the command (``rslp ...`` or a path to it).
HINT = re.compile(r"^  ([a-z ]+): ((?:\S*/)?rslp .*)$", flags=re.MULTILINE)


def shell_env(activated: bool = True) -> dict[str, str]:
    """The environment of a user's shell: ``rslp`` on PATH when the venv is activated, else not."""
    bin_dir = str(Path(sys.executable).parent)
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != bin_dir]
    return {
        **os.environ,
        "PATH": os.pathsep.join([bin_dir, *path] if activated else path),
        "PYTHONPATH": str(REPO),
        "WANDB_MODE": "disabled",
    }


def hints(stdout: str) -> dict[str, str]:
    """The printed hints by what they do (``watch it``, ``run workers``, ...)."""
    return dict(HINT.findall(stdout))


def run_printed(command: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """``command`` as a user pastes it: split like a shell, run from the repository root."""
    return subprocess.run(shlex.split(command), env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
