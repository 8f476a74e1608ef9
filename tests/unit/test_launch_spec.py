"""The experiment spec of a worker, checked option by option on ``spec.to_json()``.

``to_json()`` is exactly what beaker-py sends to Beaker, so these tests pin what a
launch asks for without contacting anything.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from pydantic import ValidationError

from rslp import registry
from rslp.common.launch import fleet_name
from rslp.launch import commands
from rslp.launch.beaker import build_spec
from rslp.launch.config import LaunchConfig
from rslp.launch.fleet import FleetError, new_launch_id, parse_worker_name, worker_name
from rslp.launch.pool import PoolSettings

HOUR_NS = 3600 * 1_000_000_000
NAME = "demo-abc123-w0"


def make_config(**overrides: Any) -> LaunchConfig:
    fields: dict[str, Any] = {
        "fleet": "demo",
        "image": "someone/rslp-worker",
        "clusters": ["ai2/jupiter"],
        "worker": {"queue": "pubsub://my-project", "subscription": "demo-sub"},
    }
    fields.update(overrides)
    return LaunchConfig.model_validate(fields)


def task_json(config: LaunchConfig, name: str = NAME) -> dict[str, Any]:
    spec = build_spec(config, name).to_json()
    assert len(spec["tasks"]) == 1
    task: dict[str, Any] = spec["tasks"][0]
    return task


def env_of(task: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {e["name"]: {k: v for k, v in e.items() if k != "name"} for e in task["envVars"]}


def test_image_and_clusters_go_into_the_task() -> None:
    task = task_json(make_config(clusters=["ai2/jupiter", "ai2/ceres"]))
    assert task["image"] == {"beaker": "someone/rslp-worker"}
    assert task["constraints"] == {"cluster": ["ai2/jupiter", "ai2/ceres"]}
    assert task["name"] == "worker"


def test_gpus_and_shared_memory_are_resources() -> None:
    task = task_json(make_config(gpus=2, shared_memory="256GiB"))
    assert task["resources"] == {"gpuCount": 2, "sharedMemory": "256GiB"}


def test_cpu_worker_asks_for_zero_gpus_and_default_shared_memory() -> None:
    assert task_json(make_config())["resources"] == {"gpuCount": 0}


def test_priority_defaults_to_low_and_can_be_raised() -> None:
    assert task_json(make_config())["context"]["priority"] == "low"
    assert task_json(make_config(priority="high"))["context"]["priority"] == "high"
    with pytest.raises(ValidationError):
        make_config(priority="whenever")


def test_preemptible_is_min_runtime_zero_with_auto_resume() -> None:
    context = task_json(make_config())["context"]
    assert context["minRuntime"] == 0
    assert context["autoResume"] is True
    assert "preemptible" not in context  # deprecated in beaker-py 2.8; the API rejects it beside minRuntime


def test_not_preemptible_sets_neither_field() -> None:
    context = task_json(make_config(preemptible=False))["context"]
    assert context == {"priority": "low"}


def test_timeout_24h_is_24_hours_in_nanoseconds() -> None:
    assert task_json(make_config(timeout="24h"))["timeout"] == 24 * HOUR_NS
    assert task_json(make_config(timeout="1h30m"))["timeout"] == 90 * 60 * 1_000_000_000


@pytest.mark.parametrize("bare", ["86400", "24"])
def test_timeout_without_unit_is_refused_not_read_as_nanoseconds(bare: str) -> None:
    with pytest.raises(ValidationError, match="needs a unit"):
        make_config(timeout=bare)


def test_no_timeout_by_default() -> None:
    assert "timeout" not in task_json(make_config())


def test_budget_is_on_the_experiment() -> None:
    assert build_spec(make_config(budget="ai2/my-budget"), NAME).to_json()["budget"] == "ai2/my-budget"
    assert "budget" not in build_spec(make_config(), NAME).to_json()


def test_worker_identity_is_in_the_env() -> None:
    env = env_of(task_json(make_config()))
    assert env["RSLP_WORKER_NAME"] == {"value": NAME}
    assert env["RSLP_FLEET"] == {"value": "demo"}
    assert env["RSLP_LAUNCH_ID"] == {"value": "abc123"}


def test_env_vars_and_secret_env_vars() -> None:
    env = env_of(task_json(make_config(env={"RSLP_LOG_LEVEL": "DEBUG"}, secret_env={"WANDB_API_KEY": "wandb-key"})))
    assert env["RSLP_LOG_LEVEL"] == {"value": "DEBUG"}
    assert env["WANDB_API_KEY"] == {"secret": "wandb-key"}


def test_gcp_credentials_are_a_secret_file_named_by_google_application_credentials() -> None:
    task = task_json(make_config(gcp_credentials={"secret": "gcp-key"}))
    assert task["datasets"] == [{"source": {"secret": "gcp-key"}, "mountPath": "/etc/rslp/gcp-credentials.json"}]
    assert env_of(task)["GOOGLE_APPLICATION_CREDENTIALS"] == {"value": "/etc/rslp/gcp-credentials.json"}


def test_host_path_and_weka_mounts_from_strings_or_mappings() -> None:
    task = task_json(
        make_config(
            host_path_mounts=["/net/nfs/data:/data", {"host_path": "/scratch", "mount_path": "/scratch"}],
            weka_mounts=["dfive-default:/weka/dfive-default"],
        )
    )
    assert task["datasets"] == [
        {"source": {"hostPath": "/net/nfs/data"}, "mountPath": "/data"},
        {"source": {"hostPath": "/scratch"}, "mountPath": "/scratch"},
        {"source": {"weka": "dfive-default"}, "mountPath": "/weka/dfive-default"},
    ]


def test_no_mounts_means_no_datasets_field() -> None:
    assert "datasets" not in task_json(make_config())


def test_command_runs_the_worker_with_its_queue_and_name() -> None:
    assert task_json(make_config())["command"] == [
        "rslp",
        "worker",
        "--queue",
        "pubsub://my-project",
        "--subscription",
        "demo-sub",
        "--worker_id",
        NAME,
    ]


def test_command_passes_set_worker_options_and_extra_args() -> None:
    worker = {
        "queue": "pubsub://p",
        "subscription": "s",
        "idle_timeout": 600,
        "retries": 3,
        "retry_sleep": 5.0,
        "extra_args": ["--flush_messages", "true"],
    }
    command = task_json(make_config(worker=worker))["command"]
    assert command[2:] == [
        "--queue",
        "pubsub://p",
        "--subscription",
        "s",
        "--idle_timeout",
        "600",
        "--retries",
        "3",
        "--retry_sleep",
        "5",
        "--worker_id",
        NAME,
        "--flush_messages",
        "true",
    ]


def test_spec_json_is_plain_json() -> None:
    full = make_config(
        budget="ai2/b",
        gpus=1,
        shared_memory="10GB",
        timeout="24h",
        env={"A": "1"},
        secret_env={"B": "b"},
        gcp_credentials={"secret": "g", "mount_path": "/creds.json"},
        host_path_mounts=["/a:/a"],
        weka_mounts=["w:/w"],
    )
    spec = build_spec(full, NAME).to_json()
    assert json.loads(json.dumps(spec)) == spec


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"env": {"RSLP_WORKER_NAME": "x"}}, "set by rslp itself"),
        ({"gcp_credentials": {"secret": "g"}, "env": {"GOOGLE_APPLICATION_CREDENTIALS": "/x"}}, "set by rslp"),
        ({"env": {"A": "1"}, "secret_env": {"A": "s"}}, "both as plain and as secret"),
        ({"env": {"1BAD": "x"}}, "not a valid environment variable"),
        ({"host_path_mounts": ["/a:/data"], "weka_mounts": ["b:/data"]}, "same path"),
        ({"weka_mounts": ["bucket-without-path"]}, "BUCKET:MOUNT_PATH"),
        ({"host_path_mounts": ["/a:relative"]}, "must be absolute"),
        ({"fleet": "has space"}, "fleet name"),
        ({"fleet": "-dash"}, "fleet name"),
        ({"clusters": []}, "at least 1"),
        ({"shared_memory": "lots"}, "256GiB"),
        ({"gpus": -1}, "greater than or equal"),
        ({"worker": {"queue": "my-project", "subscription": "s"}}, "pubsub://PROJECT"),
        ({"colour": "blue"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_config_is_refused_with_its_reason(overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        make_config(**overrides)


def test_spec_refuses_a_name_from_another_fleet() -> None:
    with pytest.raises(ValueError, match="not a worker name"):
        build_spec(make_config(), "other-abc123-w0")


def test_worker_names_parse_back_and_exclude_fleets_sharing_a_prefix() -> None:
    assert worker_name("demo", "abc123", 7) == "demo-abc123-w7"
    assert parse_worker_name("demo", "demo-abc123-w7") == ("abc123", 7)
    assert parse_worker_name("demo", "demo-b-abc123-w7") is None  # fleet "demo-b"
    assert parse_worker_name("demo", "xdemo-abc123-w7") is None
    assert parse_worker_name("demo", "demo-abc123-w7-extra") is None


def test_launch_ids_are_short_dashless_and_sort_by_time() -> None:
    early, late = new_launch_id(now=1_700_000_000), new_launch_id(now=1_700_000_001)
    assert early[:-2] < late[:-2]
    assert len(early) == 8
    assert "-" not in early


def test_dry_run_prints_every_spec_and_needs_no_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    monkeypatch.delenv("BEAKER_TOKEN", raising=False)
    monkeypatch.setenv("BEAKER_CONFIG", str(tmp_path / "missing.yml"))

    def no_beaker() -> None:
        raise AssertionError("a dry run contacted Beaker")

    monkeypatch.setattr(commands, "connect", no_beaker)
    names = commands.launch(
        fleet="demo",
        subscription="s",
        num_workers=3,
        dry_run=True,
        pool=PoolSettings(image="someone/rslp-worker", queue="pubsub://p", clusters=["ai2/jupiter"], timeout="24h"),
    )
    out = capsys.readouterr().out
    assert len(names) == 3
    assert len({n.rsplit("-", 2)[1] for n in names}) == 1  # one launch id
    for name in names:
        assert f"# {name}, image someone/rslp-worker" in out
        assert f"value: {name}" in out
    assert out.count("---") == 3
    assert f"timeout: {24 * HOUR_NS}" in out
    assert "nothing was sent to Beaker" in out


def test_launch_with_bad_options_is_one_line_fleet_error() -> None:
    with pytest.raises(FleetError, match=r"invalid launch config: timeout: duration '24'") as info:
        commands.launch(
            fleet="demo",
            subscription="s",
            num_workers=1,
            pool=PoolSettings(image="i", queue="pubsub://p", clusters=["c"], timeout="24"),
        )
    assert "\n" not in str(info.value)


def test_zero_workers_is_refused() -> None:
    with pytest.raises(FleetError, match="at least 1"):
        commands.launch_config(make_config(), 0, dry_run=True)


def test_ancestor_command_line_parses_and_dry_runs(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "--image_name",
        "IMG",
        "--project_id",
        "P",
        "--subscription_id",
        "S-sub",
        "--num_workers",
        "2",
        "--gpus",
        "1",
        "--shared_memory",
        "256GiB",
        "--cluster",
        '["ai2/x"]',
        "--dry_run",
        "true",
    ]
    workflow = registry.get("common", "launch")
    assert workflow.parse_args(argv)["cluster"] == ["ai2/x"]
    names = workflow.run(argv)
    out = capsys.readouterr().out
    assert [n.split("-")[-1] for n in names] == ["w0", "w1"]
    assert all(n.startswith("S-sub-") for n in names)
    assert "pubsub://P" in out
    assert "sharedMemory: 256GiB" in out
    assert "gpuCount: 1" in out


def test_ancestor_fleet_name_is_a_valid_beaker_name() -> None:
    assert fleet_name("rslp-job-queue-me-sub") == "rslp-job-queue-me-sub"
    assert fleet_name("a~b%c+d") == "a-b-c-d"
    make_config(fleet=fleet_name("~weird" + "x" * 100))


def test_a_fleet_started_for_a_job_accepts_only_that_jobs_root(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(commands, "connect", lambda: None)
    commands.launch(
        fleet="demo",
        subscription="s",
        num_workers=1,
        dry_run=True,
        pool=PoolSettings(
            image="someone/rslp-worker", queue="pubsub://p", clusters=["ai2/jupiter"], job_roots="gs://bucket/jobs/j1"
        ),
    )
    assert "RSLP_JOB_ROOTS" in capsys.readouterr().out
    env = env_of(task_json(make_config(env={"RSLP_JOB_ROOTS": "gs://bucket/jobs/j1"})))
    assert env["RSLP_JOB_ROOTS"] == {"value": "gs://bucket/jobs/j1"}


@pytest.mark.parametrize(("gpus", "idle"), [(1, "1800"), (0, "600")])
def test_launched_workers_idle_timeout_fits_their_pool(
    gpus: int, idle: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A GPU worker must outlast the CPU steps that feed it, not exit after the worker's default 10 s."""
    monkeypatch.setattr(commands, "connect", lambda: pytest.fail("a dry run contacted Beaker"))
    pool = PoolSettings(image="i", queue="pubsub://p", clusters=["c"], gpus=gpus)
    commands.launch(fleet="f", pool=pool, subscription="s", num_workers=1, dry_run=True)
    assert re.search(rf"- --idle_timeout\n\s*- '{idle}'\n", capsys.readouterr().out)
    pool = pool.model_copy(update={"idle_timeout": 42})
    commands.launch(fleet="f", pool=pool, subscription="s", num_workers=1, dry_run=True)
    assert re.search(r"- --idle_timeout\n\s*- '42'\n", capsys.readouterr().out)
