"""The operator scripts in scripts/: shellcheck-clean, a dry run, and a clear message when a tool is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "scripts" / "build_worker_image.sh"


def _run(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path or os.environ["PATH"]}
    return subprocess.run([str(BUILD), *args], capture_output=True, text=True, env=env, timeout=60)


def test_scripts_are_shellcheck_clean() -> None:
    shellcheck = Path(sys.executable).parent / "shellcheck"
    scripts = sorted(str(p) for p in (REPO / "scripts").glob("*.sh"))
    assert scripts
    done = subprocess.run([str(shellcheck), *scripts], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_dry_run_prints_the_build_and_push_tagged_with_the_commit() -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
    done = _run("--dry-run", "--workspace", "ai2/x")
    assert done.returncode == 0, done.stderr
    build, push = done.stdout.strip().splitlines()
    assert build.startswith("docker build -f worker.Dockerfile -t rslp-worker:" + commit.stdout.strip())
    assert push.startswith("beaker image create --name rslp-worker-" + commit.stdout.strip())
    assert "--workspace ai2/x" in push


def test_missing_docker_and_beaker_are_named_and_nothing_runs(tmp_path: Path) -> None:
    """A PATH with only what the script itself needs: no docker, no beaker."""
    for tool in ("bash", "git", "dirname", "sed"):
        found = shutil.which(tool)
        assert found is not None
        (tmp_path / tool).symlink_to(found)
    done = _run(path=str(tmp_path))
    assert done.returncode == 2
    assert "missing docker" in done.stderr and "missing beaker" in done.stderr
    assert "nothing was built" in done.stderr
