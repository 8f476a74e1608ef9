"""Fleets sized by their work: the deadline arithmetic, `launch --deadline`, and the autoscaler on the fake seam."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from rslp.errors import PermanentError
from rslp.jobroot import JobRoot
from rslp.launch import commands
from rslp.launch.autoscale import Autoscaler
from rslp.launch.fleet import FleetError
from rslp.launch.pool import PoolSettings
from rslp.launch.sizing import DEFAULT_GUESS, DEFAULT_MAX_WORKERS, parse_duration, size_pools
from rslp.pipeline.job import make_task
from tests.unit.test_launch_client import FakeFleetClient, make_config
from tests.unit.test_status_report import make_job

STEPS = ["create_windows", "predict", "postprocess"]  # topics: st-cpu, st-gpu, st-cpu; combine on st-combine


def finish(root: Path, step: str, partitions: range, seconds: float) -> None:
    """Done markers as the worker writes them, with the task's duration."""
    ledger = JobRoot(root)
    for i in partitions:
        ledger.mark(make_task("job-test", str(root), step, f"p{i:05d}"), "done", worker="w", duration=seconds)


def dry_launch(root: Path, deadline: str, queue: str | None = None) -> list[str]:
    """``rslp launch --fleet demo --job_root ROOT --deadline D --dry_run`` on a minimal pool (``--queue`` if given)."""
    pool = PoolSettings(image="i", clusters=["c"], queue=queue)
    return commands.launch(fleet="demo", job_root=str(root), deadline=deadline, dry_run=True, pool=pool)


def test_deadline_arithmetic_uses_measured_durations_and_guesses(tmp_path: Path) -> None:
    make_job(tmp_path, 10)
    finish(tmp_path, "create_windows", range(4), 30.0)
    pools = {p.topic: p for p in size_pools(str(tmp_path), time_left=60, max_workers=4)}
    cpu, gpu, combine = pools["st-cpu"], pools["st-gpu"], pools["st-combine"]
    # st-cpu: 6 create_windows x 30 s measured + 10 postprocess x the guess = 280 s of work in 60 s: 5, capped at 4.
    assert cpu.work_seconds == pytest.approx(6 * 30 + 10 * DEFAULT_GUESS["postprocess"])
    assert cpu.workers == 4
    assert (cpu.ready, gpu.ready, combine.ready) == (6, 4, 0)  # predict is ready where create_windows is done
    assert gpu.workers == 4  # 10 x 60 s guessed in 60 s: 10, capped at 4
    line = cpu.line(60, 4)
    assert line.startswith("st-cpu: 16 tasks left (create_windows 6 x 30.0s measured, postprocess 10 x 10.0s guessed)")
    assert line.endswith("= 4 workers, capped at --max_workers 4")


def test_a_done_job_needs_no_workers(tmp_path: Path) -> None:
    make_job(tmp_path, 3)
    for step in STEPS:
        finish(tmp_path, step, range(3), 1.0)
    finish(tmp_path, "combine", range(0), 1.0)
    JobRoot(tmp_path).mark(make_task("job-test", str(tmp_path), "combine", "job"), "done", worker="w", duration=1.0)
    assert [p.workers for p in size_pools(str(tmp_path), time_left=3600)] == [0, 0, 0]


def test_durations_need_a_unit_or_are_seconds() -> None:
    assert parse_duration("6h") == 6 * 3600
    assert parse_duration("1h30m") == 5400
    assert parse_duration("90") == 90
    assert parse_duration("6 hours") == 6 * 3600  # pytimeparse reads words too
    for bad in ("soon", "-1h", "6 parsecs"):
        with pytest.raises(ValueError, match="must look like"):
            parse_duration(bad)


def test_launch_with_deadline_prints_the_arithmetic_and_one_pool_per_topic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_job(tmp_path, 10, queue="pubsub://my-project")
    names = commands.launch(
        fleet="demo",
        job_root=str(tmp_path),
        deadline="10m",
        max_workers=3,
        dry_run=True,
        pool=PoolSettings(image="someone/rslp-worker", clusters=["ai2/jupiter"], queue="pubsub://my-project"),
    )
    out = capsys.readouterr().out
    assert out.startswith("queue pubsub://my-project\n")  # the queue it acts on, first
    assert "st-cpu: 20 tasks left" in out and "st-gpu: 10 tasks left" in out
    assert "st-combine: 1 tasks left" in out
    assert {n.rsplit("-", 2)[0] for n in names} == {"demo.st-cpu", "demo.st-gpu", "demo.st-combine"}
    assert sum(n.startswith("demo.st-gpu-") for n in names) == 1  # 10 x 60 s in 10 min
    assert "--subscription\n  - st-gpu" in out or "- st-gpu" in out
    assert "pubsub://my-project" in out


def test_launch_needs_workers_or_a_deadline() -> None:
    with pytest.raises(FleetError, match="--num_workers and --subscription, or --job_root and --deadline"):
        commands.launch(fleet="demo", dry_run=True, pool=PoolSettings(image="i", clusters=["c"], queue="pubsub://p"))
    with pytest.raises(FleetError, match="--image and --clusters are required with the beaker backend"):
        commands.launch(
            fleet="demo", subscription="s", num_workers=1, dry_run=True, pool=PoolSettings(queue="pubsub://p")
        )


class FinalizingClient(FakeFleetClient):
    """The fake seam, where a cancelled worker is gone at the next listing (as after its preemption exit)."""

    def cancel(self, workload_ids: list[str]) -> list[str]:
        self.finalized.update(workload_ids)
        return super().cancel(workload_ids)


def scaler(root: Path, client: FakeFleetClient, **kw: object) -> Autoscaler:
    return Autoscaler(
        client,
        "demo",
        str(root),
        lambda topic: make_config(fleet=f"demo.{topic}", worker={"queue": "pubsub://p", "subscription": topic}),
        deadline_at=time.time() + 60,
        **kw,  # type: ignore[arg-type]
    )


def test_autoscaler_submits_pool_specs_and_shrinks_only_after_cooldown(tmp_path: Path) -> None:
    make_job(tmp_path, 10)
    client = FinalizingClient()
    auto = scaler(tmp_path, client, max_workers=4, cooldown=2)
    decisions, finished = auto.check()
    assert not finished
    by_topic = {d.topic: d for d in decisions}
    # st-cpu: 10 create_windows x 5 s + 10 postprocess x 10 s guessed = 150 s in 60 s: 3 (10 are ready).
    # Nothing of predict is ready: the GPU pool is not started yet.
    assert (by_topic["st-cpu"].action, by_topic["st-cpu"].target) == ("up", 3)
    assert (by_topic["st-gpu"].action, by_topic["st-gpu"].target) == ("hold", 0)
    created = client.named("create_experiment")
    assert [c[2].rsplit("-", 2)[0] for c in created] == ["demo.st-cpu"] * 3
    spec = json.dumps(created[0][3].to_json())
    assert '"st-cpu"' in spec and "--subscription" in spec

    finish(tmp_path, "create_windows", range(10), 50.0)  # now 10 predicts are ready: 10 x 60 s / 60 s, max 4
    decisions, _ = auto.check()
    assert {d.topic: (d.action, d.changed) for d in decisions}["st-gpu"] == ("up", 4)

    finish(tmp_path, "predict", range(9), 5.0)  # 1 predict left: target 1, but a pool shrinks only after 2 checks
    gpu = [{d.topic: d for d in auto.check()[0]}["st-gpu"] for _ in range(2)]
    assert [(d.current, d.target, d.action) for d in gpu] == [(4, 1, "hold"), (4, 1, "down")]
    assert gpu[1].changed == -3
    cancelled = client.named("cancel")[-1][1]
    assert all("demo.st-gpu" in c for c in cancelled) and len(cancelled) == 3


def test_autoscaler_stops_every_pool_when_the_job_is_done(tmp_path: Path) -> None:
    make_job(tmp_path, 2)
    client = FinalizingClient()
    auto = scaler(tmp_path, client, min_workers=1)
    auto.check()
    assert len(client.named("create_experiment")) == 3  # min_workers keeps one per pool while work is left
    for step in STEPS:
        finish(tmp_path, step, range(2), 1.0)
    JobRoot(tmp_path).mark(make_task("job-test", str(tmp_path), "combine", "job"), "done", worker="w", duration=1.0)
    decisions, finished = auto.check()
    assert finished
    assert {d.action for d in decisions} == {"stop"}
    assert all(not client.list_workloads(None, "demo", active_only=True) for _ in range(1))


# The operator's money: numbers from a job root never size a fleet past the ceiling ----


def test_a_pool_never_grows_past_the_default_ceiling_and_at_most_doubles_a_check(tmp_path: Path) -> None:
    """400 partitions x 5 s guessed in 60 s would be 34 workers; one forged done marker claims a
    duration of 1e9 s. Without --max_workers: 4, then 8, then 16, then the default ceiling of 20."""
    make_job(tmp_path, 400)
    finish(tmp_path, "create_windows", range(1), 1e9)
    auto = scaler(tmp_path, FakeFleetClient())
    sizes = []
    for _ in range(5):
        by_topic = {d.topic: d for d in auto.check()[0]}
        sizes.append(tuple(by_topic[t].current + by_topic[t].changed for t in ("st-cpu", "st-gpu")))
    # st-gpu: one predict is ready (the forged marker's partition), its duration ignored.
    assert sizes == [(4, 1), (8, 1), (16, 1), (20, 1), (20, 1)]


def test_launch_with_a_deadline_and_no_max_workers_stops_at_the_default_ceiling(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_job(tmp_path, 400, queue="pubsub://my-project")
    names = dry_launch(tmp_path, "1m", queue="pubsub://my-project")
    assert sum(n.startswith("demo.st-gpu-") for n in names) == DEFAULT_MAX_WORKERS
    assert f"= 20 workers, capped at {DEFAULT_MAX_WORKERS} (the default; --max_workers N to change)" in (
        capsys.readouterr().out
    )


def test_marker_durations_outside_the_plausible_band_are_ignored(tmp_path: Path) -> None:
    make_job(tmp_path, 10)
    for i, seconds in enumerate([1e9, -5.0, float("inf")]):
        finish(tmp_path, "create_windows", range(i, i + 1), seconds)
    (cpu,) = [p for p in size_pools(str(tmp_path), time_left=3600) if p.topic == "st-cpu"]
    assert (cpu.steps[0].seconds, cpu.steps[0].measured) == (DEFAULT_GUESS["create_windows"], False)
    finish(tmp_path, "create_windows", range(3, 4), 7.0)
    (cpu,) = [p for p in size_pools(str(tmp_path), time_left=3600) if p.topic == "st-cpu"]
    assert (cpu.steps[0].seconds, cpu.steps[0].measured) == (7.0, True)


def test_markers_of_partitions_the_job_does_not_have_count_for_nothing(tmp_path: Path) -> None:
    """40 partitions' worth of forged done markers (p00010..p00049) on a 10-partition job: the
    autoscaler still sees all 10 create_windows left and keeps the pool, rather than stopping it."""
    make_job(tmp_path, 10)
    for step in [*STEPS, "combine"]:
        finish(tmp_path, step, range(10, 50), 1.0)
    client = FinalizingClient()
    decisions, finished = scaler(tmp_path, client).check()
    assert not finished
    (cpu,) = [p for p in size_pools(str(tmp_path), time_left=3600) if p.topic == "st-cpu"]
    assert cpu.steps[0].left == 10
    assert {d.topic: d.action for d in decisions}["st-cpu"] == "up"


class AnnouncingClient(FakeFleetClient):
    """The fake seam, noting on stdout when the first worker is created (to check what was printed before)."""

    def create_experiment(self, workspace: str | None, name: str, spec: object) -> str:
        if not self.named("create_experiment"):
            print("FIRST WORKER CREATED")
        return super().create_experiment(workspace, name, spec)  # type: ignore[arg-type]


def test_the_total_is_printed_before_more_than_a_handful_are_launched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    make_job(tmp_path, 400, queue="pubsub://my-project")
    client = AnnouncingClient()
    monkeypatch.setattr(commands, "connect", lambda: client)
    commands.launch(
        fleet="demo",
        job_root=str(tmp_path),
        deadline="1m",
        max_workers=3,
        pool=PoolSettings(image="i", clusters=["c"], queue="pubsub://my-project"),
    )
    out = capsys.readouterr().out
    assert out.index("total: 7 workers in 3 pools of fleet demo") < out.index("FIRST WORKER CREATED")

    client = AnnouncingClient()
    monkeypatch.setattr(commands, "connect", lambda: client)
    commands.launch(
        fleet="solo", subscription="s", num_workers=5, pool=PoolSettings(image="i", clusters=["c"], queue="pubsub://p")
    )
    out = capsys.readouterr().out
    assert out.index("launching 5 workers of fleet solo") < out.index("FIRST WORKER CREATED")

    client = AnnouncingClient()
    finish(tmp_path, "create_windows", range(200), 5.0)  # half of it ready for predict
    scaler(tmp_path, client, max_workers=3).check()
    out = capsys.readouterr().out
    assert out.index("launching 6 workers of fleet demo: st-cpu +3, st-gpu +3") < out.index("FIRST WORKER CREATED")


def test_escape_sequences_in_a_job_header_reach_no_sizing_or_autoscale_line_raw(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A header whose combine topic carries an OSC 52 clipboard write and a cursor move is refused in one
    line (topics are Pub/Sub topic ids) before anything is sized, launched or printed raw."""
    make_job(tmp_path, 10, queue="pubsub://my-project")
    manifest = JobRoot(tmp_path).manifest_path
    header = json.loads(manifest.read_text())
    evil = "st-combine\x1b]52;c;ZWNobyBodA==\x07\x1b[2A"
    header["topics"]["combine"] = evil
    manifest.write_text(json.dumps(header))
    with pytest.raises(PermanentError, match=r"topics\.combine: String should match pattern") as refused:
        dry_launch(tmp_path, "10m")
    assert "\n" not in str(refused.value)
    with pytest.raises(PermanentError, match=r"topics\.combine"):
        scaler(tmp_path, FakeFleetClient()).run(interval=0, max_checks=1)
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out


def test_launch_for_a_job_never_takes_a_queue_only_its_manifest_names(tmp_path: Path) -> None:
    """A job-root writer could point the manifest at another project's queue: workers pull only a named one."""
    make_job(tmp_path, 2, queue="pubsub://someone-elses-project")
    with pytest.raises(FleetError, match=r"names the queue pubsub://someone-elses-project; .*add --queue"):
        dry_launch(tmp_path, "1h")
    with pytest.raises(FleetError, match="add --queue"):
        commands.autoscale("demo", job_root=str(tmp_path), max_checks=1, pool=PoolSettings(image="i", clusters=["c"]))
