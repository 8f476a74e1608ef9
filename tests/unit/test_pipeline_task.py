"""A pipeline task reaches its step as the task itself: no parser, one header read, one step order."""

from __future__ import annotations

from pathlib import Path

import jsonargparse
import pytest
import yaml

from rslp import registry, storage
from rslp.jobroot import JobRoot
from rslp.main import main
from rslp.pipeline.demo import DEMO_DIR
from rslp.pipeline.job import make_task
from rslp.pipeline.write_jobs import write_jobs
from rslp.task import Task
from rslp.worker.guard import admit


@pytest.fixture
def job(demo_copy: Path, tmp_path: Path) -> str:
    """A demo job (its pipeline copied, so a test may edit it after the job is written)."""
    job_root = str(tmp_path / "job")
    write_jobs(str(demo_copy / "pipeline.yaml"), str(DEMO_DIR / "request.geojson"), job_root)
    return job_root


def first_task(job_root: str, step: str = "create_windows") -> Task:
    return make_task(JobRoot(job_root).read_manifest().job_id, job_root, step, "p00000")


def parsers_built(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ``prog`` of every registry parser built from now on (rslearn's own parsers have none of ours)."""
    built: list[str] = []
    init = jsonargparse.ArgumentParser.__init__

    def counting(self: jsonargparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        if str(kwargs.get("prog", "")).startswith("pipeline "):
            built.append(str(kwargs["prog"]))
        init(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(jsonargparse.ArgumentParser, "__init__", counting)
    monkeypatch.setattr(registry, "_PARSERS", {})
    return built


def test_a_pipeline_task_from_a_message_builds_no_parser(job: str, monkeypatch: pytest.MonkeyPatch) -> None:
    built = parsers_built(monkeypatch)
    task = first_task(job)
    (downstream,) = registry.get("pipeline", "create_windows").run_task(task)
    assert downstream.task.step == "prepare" and downstream.task.partition == "p00000"
    assert built == []


def test_a_step_run_by_hand_builds_its_parser_once_per_process(
    job: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    built = parsers_built(monkeypatch)
    for _ in range(2):
        assert main(["pipeline", "create_windows", "--job_root", job, "--partition", "p00000"]) == 0
    assert built == ["pipeline create_windows"]
    assert main(["pipeline", "create_windows", "--job_root", job, "--partition", "../p1"]) == 2
    assert "is not a partition id of job" in capsys.readouterr().err


def test_the_header_and_dataset_json_are_read_once_per_task(job: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard reads the header to admit the task; the step gets that one (and reads dataset.json once)."""
    task = first_task(job)
    registry.get("pipeline", "create_windows").run_task(task)  # the process's imports and config, as a warm worker
    reads: list[str] = []
    read_text = storage.read_text

    def counting(path: object, limit: int) -> str:
        reads.append(Path(str(path)).name)
        return read_text(path, limit)  # type: ignore[arg-type]

    monkeypatch.setattr(storage, "read_text", counting)
    admitted = admit(task)
    registry.get("pipeline", "create_windows").run_task(task, admitted.manifest)
    assert reads.count("manifest.json") == 1
    assert reads.count("dataset.json") == 1


def test_a_job_follows_the_step_order_of_its_header_not_an_edited_config(job: str, demo_copy: Path) -> None:
    """The header is the one source of a job's steps: the guard admits by it, and the steps follow it."""
    pipeline = demo_copy / "pipeline.yaml"
    raw = yaml.safe_load(pipeline.read_text())
    raw["steps"] = [s for s in raw["steps"] if s["name"] != "prepare"]
    pipeline.write_text(yaml.safe_dump(raw))
    (downstream,) = registry.get("pipeline", "create_windows").run_task(first_task(job))
    header = JobRoot(job).read_manifest()
    assert downstream.task.step == "prepare" and downstream.topic == header.topics["prepare"]
