"""Printed commands name the program as this shell can reach it, and the flags the next command needs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from rslp import hints


def test_the_program_is_rslp_on_path_else_the_venvs_script(monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = Path(sys.executable).parent
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert hints.program() == "rslp"
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # a venv not activated
    monkeypatch.chdir(bin_dir.parent.parent)
    assert hints.program() == str((bin_dir / "rslp").relative_to(bin_dir.parent.parent))
    monkeypatch.chdir("/")
    assert hints.program() == str(bin_dir / "rslp")


def test_a_worker_hint_accepts_an_object_store_job_root_and_leaves_local_ones_alone() -> None:
    assert hints.worker_job_roots("gs://b/jobs/j1") == ["gs://b/jobs"]
    assert hints.worker_job_roots("gs://b/j1") == ["gs://b"]
    assert hints.worker_job_roots("/tmp/jobs/j1") == []
