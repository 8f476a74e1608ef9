"""Launched workers can reach GCP, and a launch accepts only what its workers accept."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from rslp import registry
from rslp.launch import commands
from rslp.launch.fleet import FleetError
from rslp.launch.pool import PoolSettings
from rslp.queue.local import LocalQueue

ANCESTOR_ARGV = [
    "--image_name",
    "IMG",
    "--project_id",
    "my-project",
    "--subscription_id",
    "S-sub",
    "--num_workers",
    "1",
    "--gpus",
    "1",
    "--shared_memory",
    "256GiB",
    "--cluster",
    '["ai2/x"]',
    "--dry_run",
    "true",
]


def _dry_run_task(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict[str, Any]:
    registry.get("common", "launch").run(argv)
    out = capsys.readouterr().out
    spec = next(d for d in yaml.safe_load_all(out) if d)
    task: dict[str, Any] = spec["tasks"][0]
    return task


def _env(task: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {e["name"]: {k: v for k, v in e.items() if k != "name"} for e in task["envVars"]}


def test_ancestor_launch_mounts_gcp_credentials_and_sets_the_project(capsys: pytest.CaptureFixture[str]) -> None:
    task = _dry_run_task(capsys, ANCESTOR_ARGV)
    mounts = {d["mountPath"]: d["source"] for d in task["datasets"]}
    env = _env(task)
    path = env["GOOGLE_APPLICATION_CREDENTIALS"]["value"]
    assert mounts[path] == {"secret": "RSLEARN_GCP_CREDENTIALS"}
    assert env["GOOGLE_CLOUD_PROJECT"] == {"value": "my-project"}


def test_credentials_secret_is_configurable_and_can_be_turned_off(capsys: pytest.CaptureFixture[str]) -> None:
    task = _dry_run_task(capsys, [*ANCESTOR_ARGV, "--gcp_credentials_secret", "other-key"])
    assert [d["source"] for d in task["datasets"]] == [{"secret": "other-key"}]
    task = _dry_run_task(capsys, [*ANCESTOR_ARGV, "--no_gcp_credentials", "true"])
    assert "datasets" not in task
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in _env(task)
    assert _env(task)["GOOGLE_CLOUD_PROJECT"] == {"value": "my-project"}


@pytest.mark.parametrize(
    "options",
    [{"retries": 0}, {"retry_sleep": 0}, {"retries": 1, "retry_sleep": 0.5, "idle_timeout": 1}],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_every_worker_option_launch_accepts_the_started_worker_accepts(
    options: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command a launch puts in the spec runs: the worker exits idle (0), not on its arguments (2)."""
    queue = f"local://{tmp_path / 'q.db'}"
    LocalQueue(tmp_path / "q.db").setup("work", "work")
    pool = PoolSettings(image="i", queue=queue, clusters=["c"], **{"idle_timeout": 1, **options})
    commands.launch(fleet="f", subscription="work", num_workers=1, dry_run=True, pool=pool)
    out = capsys.readouterr().out
    spec = next(d for d in yaml.safe_load_all(out) if d)
    command = spec["tasks"][0]["command"]
    assert command[:2] == ["rslp", "worker"]
    result = subprocess.run(
        [sys.executable, "-m", "rslp.cli", *command[1:]], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("options", [{"retry_sleep": -1}, {"retries": -1}])
def test_launch_refuses_what_the_worker_would_refuse(options: dict[str, Any]) -> None:
    with pytest.raises(FleetError, match="the worker would refuse this"):
        pool = PoolSettings(image="i", queue="pubsub://p", clusters=["c"], **options)
        commands.launch(fleet="f", subscription="s", num_workers=1, pool=pool)
