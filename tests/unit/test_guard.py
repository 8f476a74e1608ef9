"""What a worker lets a message do (rslp/worker/guard.py): each check refuses with a one-line reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rslp import registry
from rslp.jobroot import JobManifest, JobRoot
from rslp.pipeline.job import make_task
from rslp.task import Downstream, Task
from rslp.worker import guard
from rslp.worker.guard import Rejected, admit
from rslp.worker.runner import Outcome


def _job(root: Path, job_id: str = "job-a", steps: tuple[str, ...] = ("prepare", "predict")) -> None:
    topics = {s: f"topic-{s}" for s in steps}
    manifest = JobManifest(
        job_id=job_id, job_root=str(root), config="-", request="-", steps=list(steps), topics=topics, partition_count=2
    )
    JobRoot(root).write_manifest(manifest)


@pytest.mark.parametrize(
    ("project", "workflow"), [("common", "worker"), ("common", "launch"), ("pipeline", "write_jobs")]
)
def test_cli_only_workflows_are_refused_from_a_message(project: str, workflow: str) -> None:
    with pytest.raises(Rejected, match="runs only from the command line") as info:
        admit(Task(project=project, workflow=workflow, args=["--help"]))
    assert info.value.kind == "cli_only"


def test_every_workflow_declares_whether_a_message_may_run_it() -> None:
    runnable = {f"{p}/{w}" for p, ws in registry.projects().items() for w in ws if registry.get(p, w).from_message}
    assert {"common/write_file", "common/sleep", "common/fail", "common/noop", "pipeline/predict"} <= runnable
    assert not {"common/worker", "common/launch", "pipeline/write_jobs"} & runnable
    write = Task(project="common", workflow="write_file", args=["/tmp/x", "y"])
    assert admit(write, allow_diagnostics=True).ledger is None


@pytest.mark.parametrize("workflow", ["write_file", "sleep", "fail", "crash", "spin", "chain"])
def test_diagnostics_run_from_a_message_only_where_the_operator_allows_them(workflow: str) -> None:
    """Four write_file messages could lay out a job root (issue 25.1): a plain `rslp worker` refuses them."""
    task = Task(project="common", workflow=workflow, args=["/tmp/x", "y"])
    with pytest.raises(Rejected, match="only if its operator starts it with --allow_diagnostics") as info:
        admit(task)
    assert info.value.kind == "diagnostic_refused"
    assert admit(task, allow_diagnostics=True).workflow.name == workflow
    assert admit(Task(project="common", workflow="noop")).workflow.name == "noop"  # touches nothing


def test_a_diagnostic_cannot_carry_a_pipeline_step(tmp_path: Path) -> None:
    """`common/noop` with another job's ids and step predict would write that task's done marker."""
    _job(tmp_path)
    real = make_task("job-a", str(tmp_path), "predict", "p00001")
    fake = Task(
        project="common", workflow="noop", job_id="job-a", job_root=str(tmp_path), partition="p00001", step="predict"
    )
    assert fake.task_id == real.task_id
    with pytest.raises(Rejected, match="is a pipeline step"):
        admit(fake)


def test_a_pipeline_task_runs_only_on_its_own_job_root_and_partition(tmp_path: Path) -> None:
    _job(tmp_path)
    good = make_task("job-a", str(tmp_path), "predict", "p00001")
    assert admit(good).ledger is not None
    elsewhere = good.model_copy(update={"args": ["--job_root", "/other/job", "--partition", "p00001"]})
    with pytest.raises(Rejected, match="args must be exactly"):
        admit(elsewhere)
    wrong_step = Task(
        project="pipeline",
        workflow="predict",
        job_id="job-a",
        job_root=str(tmp_path),
        partition="p00001",
        step="prepare",
    )
    with pytest.raises(Rejected, match="needs job_id, job_root, partition and step 'predict'"):
        admit(wrong_step)


def test_the_job_must_be_the_one_at_its_root_and_the_step_one_of_its_steps(tmp_path: Path) -> None:
    _job(tmp_path)
    with pytest.raises(Rejected, match="is not the job at"):
        admit(make_task("job-b", str(tmp_path), "predict", "p00001"))
    with pytest.raises(Rejected, match="not a step of job job-a"):
        admit(make_task("job-a", str(tmp_path), "ingest", "p00001"))


@pytest.mark.parametrize(
    ("job_root", "fragment"),
    [
        ("http://127.0.0.1:9/job", "local job roots only"),
        ("gs://bucket/job", "local job roots only"),
        ("nosuchproto://x/y", "Unsupported filesystem"),
        ("/tmp/../etc", "'..' is not allowed"),
    ],
)
def test_by_default_only_local_job_roots_are_accepted(job_root: str, fragment: str) -> None:
    with pytest.raises(Rejected, match=fragment):
        guard.check_job_root(job_root, [])


def test_configured_prefixes_pin_the_job_roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    allowed = str(tmp_path / "jobs")
    assert guard.check_job_root(f"{allowed}/a", [allowed])
    assert guard.check_job_root(f"file://{allowed}/a", [allowed])
    assert guard.check_job_root("gs://bucket/jobs/a", ["gs://bucket/jobs"])
    for outside in (f"{allowed}-evil/a", str(tmp_path / "other"), "gs://bucket/jobsx", "s3://bucket/jobs/a"):
        with pytest.raises(Rejected, match="is not under this worker's job roots"):
            guard.check_job_root(outside, [allowed, "gs://bucket/jobs"])
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "link").symlink_to(tmp_path / "other")
    with pytest.raises(Rejected, match="is not under"):
        guard.check_job_root(f"{allowed}/link/job", [allowed])
    monkeypatch.setenv(guard.JOB_ROOTS_ENV, "gs://a/jobs, /data/jobs")
    assert guard.job_roots_from(None) == ("gs://a/jobs", "/data/jobs")
    assert guard.job_roots_from("/x") == ("/x",)


def test_an_unreachable_job_root_or_a_broken_manifest_is_refused(tmp_path: Path) -> None:
    task = make_task("job-a", str(tmp_path / "nowhere"), "predict", "p00001")
    with pytest.raises(Rejected, match="cannot read its manifest"):
        admit(task)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(Rejected, match="manifest"):
        admit(make_task("job-a", str(tmp_path), "predict", "p00001"))


def test_a_done_marker_that_does_not_parse_is_refused(tmp_path: Path) -> None:
    _job(tmp_path)
    task = make_task("job-a", str(tmp_path), "prepare", "p00001")
    marker = JobRoot(tmp_path).marker_path("prepare", task.task_id, "done")
    marker.parent.mkdir(parents=True)
    for text in ("{broken", "[1]", json.dumps({"downstream": [{"topic": "t"}]})):
        marker.write_text(text)
        with pytest.raises(Rejected, match="does not parse"):
            admit(task)


def test_recorded_downstream_goes_only_to_the_jobs_topics_for_the_same_job(tmp_path: Path) -> None:
    _job(tmp_path)
    task = make_task("job-a", str(tmp_path), "prepare", "p00001")
    ledger = JobRoot(tmp_path)
    own = Downstream(topic="topic-predict", task=make_task("job-a", str(tmp_path), "predict", "p00001"))
    ledger.mark(task, "done", downstream=[own.model_dump(mode="json")])
    assert admit(task).done_downstream == [own]

    foreign_topic = Downstream(
        topic="other-fleet", task=Task(project="common", workflow="write_file", args=["/x", "y"])
    )
    other_job = Downstream(topic="topic-predict", task=make_task("job-b", "/elsewhere", "predict", "p00001"))
    for bad, fragment in ((foreign_topic, "is not one of this task's topics"), (other_job, "belongs to another job")):
        ledger.mark(task, "done", downstream=[bad.model_dump(mode="json")])
        with pytest.raises(Rejected, match=fragment):
            admit(task)


def test_a_pipeline_tasks_recorded_downstream_is_exactly_a_task_of_its_own_job(tmp_path: Path) -> None:
    """Issue 25.5: a jobless write_file recorded in a done marker ran outside the job."""
    _job(tmp_path)
    task = make_task("job-a", str(tmp_path), "prepare", "p00001")
    ledger = JobRoot(tmp_path)
    jobless = Task(project="common", workflow="write_file", args=[str(tmp_path.parent / "pwned"), "x"])
    not_a_partition = make_task("job-a", str(tmp_path), "predict", "zz0")
    past_the_count = make_task("job-a", str(tmp_path), "predict", "p00002")
    wrong_topic = Downstream(topic="topic-prepare", task=make_task("job-a", str(tmp_path), "predict", "p00001"))
    other_args = make_task("job-a", str(tmp_path), "predict", "p00001").model_copy(update={"args": ["--help"]})
    for bad, fragment in (
        (Downstream(topic="topic-predict", task=jobless), "a pipeline task of job job-a, not common/write_file"),
        (Downstream(topic="topic-predict", task=not_a_partition), "'zz0' is not a partition id"),
        (Downstream(topic="topic-predict", task=past_the_count), "has no partition 'p00002' \\(it has 2\\)"),
        (wrong_topic, "goes to that step's topic"),
        (Downstream(topic="topic-predict", task=other_args), "must be a pipeline task of job job-a"),
    ):
        ledger.mark(task, "done", downstream=[bad.model_dump(mode="json")])
        with pytest.raises(Rejected, match=fragment):
            admit(task)


@pytest.mark.parametrize(
    ("partition", "fragment"),
    [
        ("zz0", "'zz0' is not a partition id"),
        ("p2", "'p2' is not a partition id"),
        ("p00002", "has no partition 'p00002'"),
        ("job", "'job' is not a partition id"),
    ],
)
def test_a_job_task_names_one_of_the_jobs_partitions_before_anything_is_written(
    tmp_path: Path, partition: str, fragment: str
) -> None:
    """Issue 25.5: 242 messages for partitions zz0..zz39 of a 40-partition job left 484 markers."""
    _job(tmp_path, steps=("prepare", "predict"))
    with pytest.raises(Rejected, match=fragment) as info:
        admit(make_task("job-a", str(tmp_path), "prepare", partition))
    assert info.value.kind == "not_in_job"
    assert not (tmp_path / "markers").exists()
    noop = Task(project="common", workflow="noop", job_id="job-a", job_root=str(tmp_path), partition="zz0", step="x")
    with pytest.raises(Rejected, match="not a step of job"):
        admit(noop)


def test_a_per_job_step_takes_the_job_partition_only(tmp_path: Path) -> None:
    manifest = JobManifest(
        job_id="job-a",
        job_root=str(tmp_path),
        config="-",
        request="-",
        steps=["postprocess"],
        job_steps=["combine"],
        topics={"postprocess": "topic-p", "combine": "topic-c"},
        partition_count=1,
    )
    JobRoot(tmp_path).write_manifest(manifest)
    assert admit(make_task("job-a", str(tmp_path), "combine", "job")).ledger is not None
    with pytest.raises(Rejected, match="per-job step of job job-a: its partition is 'job'"):
        admit(make_task("job-a", str(tmp_path), "combine", "p00000"))


@pytest.mark.parametrize("topic", ["ab", "goog-topic", "1topic", "topic/../x", "t" * 256, "top ic"])
def test_topics_a_job_names_are_pubsub_topic_ids(tmp_path: Path, topic: str) -> None:
    (tmp_path / "manifest.json").write_text(
        json.dumps(
            {"job_id": "job-a", "job_root": str(tmp_path), "config": "-", "request": "-", "steps": ["prepare"]}
            | {"topics": {"prepare": topic}, "partition_count": 1}
        )
    )
    with pytest.raises(Rejected, match=r"manifest\.json: topics\.prepare: "):
        admit(make_task("job-a", str(tmp_path), "prepare", "p00000"))
    with pytest.raises(ValueError, match="topic"):
        Downstream(topic=topic, task=Task(project="common", workflow="noop"))


def test_the_smallest_time_limit_wins() -> None:
    wf = registry.Workflow("common", "sleep", "rslp.common.diagnostics:sleep", from_message=True, time_limit=100)
    assert guard.time_limit(Task(project="common", workflow="sleep", time_limit=86400), wf, 50, 3600) == 50
    assert guard.time_limit(Task(project="common", workflow="sleep", time_limit=5), wf, 50, 3600) == 5
    assert guard.time_limit(Task(project="common", workflow="sleep", time_limit=86400), wf, None, 3600) == 100
    bare = registry.Workflow("common", "noop", "rslp.common.diagnostics:noop", from_message=True)
    assert guard.time_limit(Task(project="common", workflow="noop"), bare, None, 3600) == 3600


def test_a_not_before_past_the_ceiling_is_refused() -> None:
    soon = Task(project="common", workflow="noop", not_before=datetime.now(UTC) + timedelta(seconds=30))
    assert 0 < guard.delay(soon, 3600) <= 30
    assert guard.delay(Task(project="common", workflow="noop"), 3600) == 0
    far = Task(project="common", workflow="noop", not_before=datetime(2999, 1, 1, tzinfo=UTC))
    with pytest.raises(Rejected, match="past this worker's ceiling"):
        guard.delay(far, 3600)


def test_a_runs_downstream_stays_on_its_topics_and_in_its_job() -> None:
    """`chain` takes its topic from the message: the worker must not publish to another fleet's topic."""
    task = Task(project="common", workflow="chain", args=["/tmp/x", "other-fleet", "/tmp/y"])
    write = Task(project="common", workflow="write_file", args=["/tmp/y", "z"])
    ok = Outcome("ok", downstream=[Downstream(topic="mine", task=write)])
    assert guard.check_downstream(task, ok, {"mine"}) is ok
    away = guard.check_downstream(
        task, Outcome("ok", downstream=[Downstream(topic="other-fleet", task=write)]), {"mine"}
    )
    assert away.kind == "permanent" and "'other-fleet' is not one of this task's topics" in away.reason
    other_job = Downstream(topic="mine", task=make_task("job-b", "/elsewhere", "predict", "p00001"))
    refused = guard.check_downstream(task, Outcome("ok", downstream=[other_job]), {"mine"})
    assert refused.kind == "permanent" and "another job" in refused.reason
