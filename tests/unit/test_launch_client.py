"""Launch, status and stop against a recording fake, and the real client's error handling.

The operations are tested through the :class:`FleetClient` seam with a fake that
records every call. :class:`BeakerFleetClient` is then tested over a stand-in for
``beaker.Beaker`` that raises what beaker-py raises: no token, a bad token (a raw
gRPC UNAUTHENTICATED), unknown workspace or cluster, and a call that never returns.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from beaker import BeakerExperimentSpec
from beaker import beaker_pb2 as pb2
from beaker.exceptions import BeakerClusterNotFound, BeakerWorkspaceNotFound, BeakerWorkspaceNotSet
from requests import HTTPError, Response

from rslp.launch import commands
from rslp.launch.beaker import BAD_TOKEN, NO_TOKEN, BeakerFleetClient, launch_fleet
from rslp.launch.config import LaunchConfig
from rslp.launch.fleet import FleetError, FleetTimeoutError, FleetWorkload, JobState, fleet_status, stop_fleet

TOKEN = "s3cret-token-value"


def make_config(**overrides: Any) -> LaunchConfig:
    fields: dict[str, Any] = {
        "fleet": "demo",
        "image": "someone/rslp-worker",
        "workspace": "ai2/fleets",
        "clusters": ["ai2/jupiter"],
        "worker": {"queue": "pubsub://p", "subscription": "s"},
    }
    fields.update(overrides)
    return LaunchConfig.model_validate(fields)


@dataclass
class FakeFleetClient:
    """Records every call; serves ``workloads`` from list_workloads as Beaker would (substring match)."""

    workloads: list[FleetWorkload] = field(default_factory=list)
    jobs: dict[str, JobState] = field(default_factory=dict)
    finalized: set[str] = field(default_factory=set)
    fail_create_after: int | None = None
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def check_target(self, workspace: str | None, clusters: list[str]) -> None:
        self.calls.append(("check_target", workspace, clusters))

    def create_experiment(self, workspace: str | None, name: str, spec: BeakerExperimentSpec) -> str:
        created = [c for c in self.calls if c[0] == "create_experiment"]
        if self.fail_create_after is not None and len(created) >= self.fail_create_after:
            raise FleetError(f"creating worker {name}: Beaker error: quota exceeded")
        self.calls.append(("create_experiment", workspace, name, spec))
        self.workloads.append(FleetWorkload(id=f"id-{name}", name=name, status="submitted"))
        return f"id-{name}"

    def list_workloads(self, workspace: str | None, name_contains: str, active_only: bool) -> list[FleetWorkload]:
        self.calls.append(("list_workloads", workspace, name_contains, active_only))
        return [w for w in self.workloads if name_contains in w.name and not (active_only and w.id in self.finalized)]

    def latest_job(self, workload_id: str) -> JobState | None:
        self.calls.append(("latest_job", workload_id))
        return self.jobs.get(workload_id)

    def cancel(self, workload_ids: list[str]) -> list[str]:
        self.calls.append(("cancel", workload_ids))
        return list(workload_ids)

    def named(self, method: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == method]


def workload(name: str, status: str = "running") -> FleetWorkload:
    return FleetWorkload(id=f"id-{name}", name=name, status=status)


# launch ---------------------------------------------------------------------------


def test_launch_creates_workers_named_fleet_launch_index() -> None:
    client = FakeFleetClient()
    names = launch_fleet(client, make_config(), 3, launch_id="abc123")
    assert names == ["demo-abc123-w0", "demo-abc123-w1", "demo-abc123-w2"]
    assert client.calls[0] == ("check_target", "ai2/fleets", ["ai2/jupiter"])
    created = client.named("create_experiment")
    assert [c[2] for c in created] == names
    for _, workspace, name, spec in created:
        assert workspace == "ai2/fleets"
        env = {e["name"]: e.get("value") for e in spec.to_json()["tasks"][0]["envVars"]}
        assert env["RSLP_WORKER_NAME"] == name


def test_two_launches_of_one_fleet_do_not_collide() -> None:
    client = FakeFleetClient()
    first = launch_fleet(client, make_config(), 2)
    second = launch_fleet(client, make_config(), 2)
    assert not set(first) & set(second)


def test_unknown_cluster_fails_before_any_worker_is_created() -> None:
    client = FakeFleetClient()

    def missing(workspace: str | None, clusters: list[str]) -> None:
        raise FleetError("checking cluster ai2/typo: Beaker cluster not found: ai2/typo")

    client.check_target = missing  # type: ignore[method-assign]
    with pytest.raises(FleetError, match="ai2/typo"):
        launch_fleet(client, make_config(clusters=["ai2/typo"]), 3)
    assert client.named("create_experiment") == []


def test_failure_midway_says_how_many_workers_exist_and_how_to_stop_them() -> None:
    client = FakeFleetClient(fail_create_after=2)
    with pytest.raises(FleetError, match=r"quota exceeded \(2 of 5 workers were created.*rslp fleet stop demo"):
        launch_fleet(client, make_config(), 5)


# status ---------------------------------------------------------------------------


def test_status_rechecks_the_prefix_of_substring_matches() -> None:
    client = FakeFleetClient(
        workloads=[
            workload("demo-abc123-w0"),
            workload("demo-b-abc123-w0"),  # fleet "demo-b": matches the substring, not the fleet
            workload("xdemo-abc123-w0"),
            workload("notes about demo-abc123-w0 in a description"),
            workload("demo.demo-gpu-abc124-w0"),  # pool demo-gpu of fleet demo (rslp fleet autoscale)
            workload("demox.gpu-abc124-w0"),
        ]
    )
    workers = fleet_status(client, "ai2/fleets", "demo")
    assert [w.name for w in workers] == ["demo-abc123-w0", "demo.demo-gpu-abc124-w0"]
    assert client.named("list_workloads") == [("list_workloads", "ai2/fleets", "demo", False)]


def test_status_orders_by_launch_then_worker_index_and_reports_jobs() -> None:
    client = FakeFleetClient(
        workloads=[workload("demo-bbb-w10"), workload("demo-bbb-w2"), workload("demo-aaa-w0", status="queued")],
        jobs={"id-demo-bbb-w2": JobState("job-2", status="canceled", exit_code=None, detail="system_preemption")},
    )
    workers = fleet_status(client, None, "demo")
    assert [w.name for w in workers] == ["demo-aaa-w0", "demo-bbb-w2", "demo-bbb-w10"]
    assert (workers[0].status, workers[0].job_id) == ("queued", None)  # no job yet: the workload's status
    assert (workers[1].status, workers[1].job_id, workers[1].detail) == ("canceled", "job-2", "system_preemption")


def test_status_command_prints_a_table(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    client = FakeFleetClient(
        workloads=[workload("demo-aaa-w0"), workload("demo-aaa-w1")],
        jobs={"id-demo-aaa-w1": JobState(job_id="j1", status="failed", exit_code=3, detail="")},
    )
    monkeypatch.setattr(commands, "connect", lambda: client)
    commands.status("demo")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["WORKER", "STATUS", "EXIT", "JOB", "DETAIL"]
    assert lines[1].split() == ["demo-aaa-w0", "running", "-", "-"]
    assert lines[2].split() == ["demo-aaa-w1", "failed", "3", "j1"]
    assert lines[3] == "2 workers: 1 failed, 1 running"


# stop -----------------------------------------------------------------------------


def test_stop_cancels_only_this_fleets_active_workers() -> None:
    client = FakeFleetClient(
        workloads=[
            workload("demo-aaa-w0"),
            workload("demo-aaa-w1"),
            workload("demo-zzz-w0"),
            workload("demo-b-aaa-w0"),
            workload("other-aaa-w0"),
        ],
        finalized={"id-demo-aaa-w1"},
    )
    cancelled = stop_fleet(client, "ai2/fleets", "demo")
    assert cancelled == ["demo-aaa-w0", "demo-zzz-w0"]
    assert client.named("list_workloads") == [("list_workloads", "ai2/fleets", "demo", True)]
    assert client.named("cancel") == [("cancel", ["id-demo-aaa-w0", "id-demo-zzz-w0"])]


def test_stop_with_nothing_running_cancels_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    client = FakeFleetClient(workloads=[workload("other-aaa-w0")])
    monkeypatch.setattr(commands, "connect", lambda: client)
    assert commands.stop("demo") == []
    assert client.named("cancel") == []
    assert "no active workers of fleet demo" in capsys.readouterr().out


def test_launch_command_prints_a_line_per_worker(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    client = FakeFleetClient()
    monkeypatch.setattr(commands, "connect", lambda: client)
    names = commands.launch_config(make_config(gpus=1), 2)
    out = capsys.readouterr().out
    assert len(client.named("create_experiment")) == 2
    for name in names:
        assert f"launched {name}, image someone/rslp-worker, clusters ai2/jupiter, 1 GPU" in out


# The real client over a stand-in for beaker.Beaker ---------------------------------


class FakeRpcError(grpc.RpcError, grpc.Call):
    """What grpc raises: an RpcError that is also a Call with a status code."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def initial_metadata(self) -> None:
        return None

    def trailing_metadata(self) -> None:
        return None

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Any) -> bool:
        return False


def raising(error: BaseException) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        raise error

    return call


def fake_beaker(**services: Any) -> Any:
    workspace = SimpleNamespace(get=lambda name=None: pb2.Workspace(id="ws-1", name=name or "default"))
    defaults: dict[str, Any] = {
        "workspace": workspace,
        "cluster": SimpleNamespace(get=lambda name: pb2.Cluster(id="cl-1", name=name)),
        "config": SimpleNamespace(user_token=TOKEN),
    }
    defaults.update(services)
    return SimpleNamespace(**defaults)


def test_no_token_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.delenv("BEAKER_TOKEN", raising=False)
    monkeypatch.setenv("BEAKER_CONFIG", str(tmp_path / "missing.yml"))
    with pytest.raises(FleetError) as info:
        BeakerFleetClient.from_env()
    assert str(info.value) == NO_TOKEN


def test_no_token_through_the_status_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.delenv("BEAKER_TOKEN", raising=False)
    monkeypatch.setenv("BEAKER_CONFIG", str(tmp_path / "missing.yml"))
    with pytest.raises(FleetError, match="no Beaker token"):
        commands.status("demo")


def test_bad_token_is_a_clear_error_that_never_shows_the_token() -> None:
    denied = FakeRpcError(grpc.StatusCode.UNAUTHENTICATED, f"invalid token {TOKEN}")
    client = BeakerFleetClient(fake_beaker(workspace=SimpleNamespace(get=raising(denied))), timeout=5)
    with pytest.raises(FleetError) as info:
        client.list_workloads("ai2/fleets", "demo-", active_only=False)
    assert str(info.value) == BAD_TOKEN
    assert TOKEN not in str(info.value)


def test_bad_token_on_create_http_401_is_the_same_clear_error() -> None:
    response = Response()
    response.status_code = 401
    create = raising(HTTPError("401 Unauthorized", response=response))
    client = BeakerFleetClient(fake_beaker(experiment=SimpleNamespace(create=create)), timeout=5)
    with pytest.raises(FleetError, match="rejected the token"):
        client.create_experiment("ai2/fleets", "demo-abc-w0", BeakerExperimentSpec.new(beaker_image="i"))


def test_unknown_workspace_is_named() -> None:
    client = BeakerFleetClient(
        fake_beaker(workspace=SimpleNamespace(get=raising(BeakerWorkspaceNotFound("ai2/nope")))), timeout=5
    )
    with pytest.raises(FleetError, match="Beaker workspace not found: ai2/nope"):
        client.check_target("ai2/nope", ["ai2/jupiter"])


def test_unknown_cluster_is_named() -> None:
    client = BeakerFleetClient(
        fake_beaker(cluster=SimpleNamespace(get=raising(BeakerClusterNotFound("ai2/typo")))), timeout=5
    )
    with pytest.raises(FleetError, match="checking cluster ai2/typo: Beaker cluster not found: ai2/typo"):
        client.check_target("ai2/fleets", ["ai2/typo"])


def test_no_default_workspace_says_how_to_set_one() -> None:
    client = BeakerFleetClient(
        fake_beaker(workspace=SimpleNamespace(get=raising(BeakerWorkspaceNotSet("not set")))), timeout=5
    )
    with pytest.raises(FleetError, match="pass --workspace"):
        client.list_workloads(None, "demo-", active_only=True)


def test_a_call_that_never_returns_is_bounded_by_the_timeout() -> None:
    never = threading.Event()

    def hang(*args: Any, **kwargs: Any) -> Any:
        never.wait(30)  # beaker-py retrying an unreachable server, forever

    client = BeakerFleetClient(fake_beaker(workload=SimpleNamespace(list=hang)), timeout=0.3)
    started = time.monotonic()
    with pytest.raises(FleetTimeoutError, match=r"did not answer within 0.3s"):
        client.list_workloads("ai2/fleets", "demo-", active_only=False)
    assert time.monotonic() - started < 3
    never.set()


def test_timeout_through_the_stop_command_is_a_fleet_error(monkeypatch: pytest.MonkeyPatch) -> None:
    never = threading.Event()
    client = BeakerFleetClient(fake_beaker(workload=SimpleNamespace(list=lambda **kw: never.wait(30))), timeout=0.2)
    monkeypatch.setattr(commands, "connect", lambda: client)
    with pytest.raises(FleetError, match="check the network"):
        commands.stop("demo")
    never.set()


def test_real_client_maps_workloads_jobs_and_cancels() -> None:
    running = pb2.Workload(
        experiment=pb2.Experiment(id="ex-1", name="demo-aaa-w0", tasks=[pb2.Task(id="t-1")]),
        status=pb2.WorkloadStatus.STATUS_RUNNING,
    )
    job = pb2.Job(
        id="job-1",
        status=pb2.JobStatus(
            status=pb2.WorkloadStatus.STATUS_CANCELED,
            canceled_code=pb2.CancelationCode.CANCELATION_CODE_SYSTEM_PREEMPTION,
            exit_code=143,
        ),
    )
    listed: list[dict[str, Any]] = []
    cancelled: list[tuple[Any, ...]] = []

    def list_workloads(**kwargs: Any) -> Any:
        listed.append(kwargs)
        return iter([running])

    def cancel(*workloads: Any) -> Any:
        cancelled.append(workloads)
        return iter(["ex-1"])

    service = SimpleNamespace(list=list_workloads, get_latest_job=lambda w: job, cancel=cancel)
    client = BeakerFleetClient(fake_beaker(workload=service), timeout=5)
    assert client.list_workloads("ai2/fleets", "demo-", active_only=True) == [
        FleetWorkload(id="ex-1", name="demo-aaa-w0", status="running")
    ]
    assert listed[0]["name_or_description"] == "demo-"
    assert listed[0]["finalized"] is False
    assert listed[0]["workspace"].id == "ws-1"
    assert client.latest_job("ex-1") == JobState(
        job_id="job-1", status="canceled", exit_code=143, detail="system_preemption"
    )
    assert client.cancel(["ex-1"]) == ["ex-1"]
    assert cancelled == [(running,)]


def test_cluster_patterns_are_left_to_beaker() -> None:
    client = BeakerFleetClient(
        fake_beaker(cluster=SimpleNamespace(get=raising(BeakerClusterNotFound("ai2/*-cirrascale")))), timeout=5
    )
    client.check_target("ai2/fleets", ["ai2/*-cirrascale"])
