"""Fixtures shared by the pipeline unit tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rslp.pipeline.demo import DEMO_DIR, DEMO_SCENE, ensure_scene

DEMO_FILES = ("pipeline.yaml", "dataset.json", "model.yaml", "checkpoint.ckpt", "request.geojson")


@pytest.fixture
def demo_copy(tmp_path: Path) -> Path:
    """The demo pipeline copied to tmp_path, its data folder linked to the generated scene."""
    ensure_scene(DEMO_SCENE, DEMO_DIR / "data")
    for name in DEMO_FILES:
        shutil.copy(DEMO_DIR / name, tmp_path / name)
    (tmp_path / "data").symlink_to(DEMO_DIR / "data")
    return tmp_path
