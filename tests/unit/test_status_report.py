"""rslp status: exact counts per state on a job with done, running, failed, dead and missing tasks."""

from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path

import pytest

from rslp import cli
from rslp.jobroot import JobManifest, JobRoot
from rslp.pipeline.job import JOB_PARTITION, make_task
from rslp.queue import Outgoing, open_queue
from rslp.status.command import status
from rslp.status.model import RATE_WINDOW, collect
from rslp.status.queue_view import PUBSUB_BACKLOG_NOTE
from rslp.status.render import render
from rslp.task import Task

STEPS = ["create_windows", "predict", "postprocess"]
TOPICS = {"create_windows": "st-cpu", "predict": "st-gpu", "postprocess": "st-cpu", "combine": "st-combine"}
NOW = 1_900_000_000.0


def square(i: int, per_row: int, size: float = 0.01) -> dict[str, object]:
    x, y = 10 + (i % per_row) * size, 50 + (i // per_row) * size
    ring = [[x, y], [x + size, y], [x + size, y + size], [x, y + size], [x, y]]
    return {"type": "Polygon", "coordinates": [ring]}


def make_job(root: Path, partitions: int, steps: list[str] = STEPS, queue: str | None = None) -> JobManifest:
    """A manifest of ``partitions`` square partitions in a square grid (no pipeline config needed)."""
    per_row = math.ceil(math.sqrt(partitions))
    manifest = JobManifest(
        job_id="job-test",
        job_root=str(root),
        config="pipeline.yaml",
        request="request.geojson",
        queue=queue or f"local://{root}/queue.db",
        created=NOW - 3600,
        steps=steps,
        job_steps=["combine"],
        topics={s: TOPICS.get(s, "st-cpu") for s in [*steps, "combine"]},
    )
    return JobRoot(root).write_job(manifest, ({"geometry": square(i, per_row)} for i in range(partitions)))


def mark(root: Path, step: str, partition: str, *states: str, at: float | None = None, error: str = "") -> Task:
    """Write markers as the worker does: running, then failed/dead (with an error) or done."""
    task = make_task("job-test", str(root), step, partition)
    ledger = JobRoot(root)
    for state in states:
        info = {"kind": "error", "error": error, "attempt": 1} if state in ("failed", "dead") else {}
        ledger.mark(task, state, worker="w-1", **info)
        if at is not None:
            path = Path(ledger.marker_path(step, task.task_id, state).path)
            os.utime(path, (at, at))
    return task


# Per partition: the markers of each step (create_windows, predict, postprocess).
SCENARIO: dict[str, list[tuple[str, ...]]] = {
    "p00000": [("running", "done"), ("running", "done"), ("running", "done")],  # done
    "p00001": [("running", "done"), ("running", "done"), ("running", "done")],  # done
    "p00002": [("running", "done"), ("running",)],  # predict running
    "p00003": [("running", "done"), ("running", "failed")],  # predict failed, will retry
    "p00004": [("running", "dead")],  # dead at the first step: the rest blocked
    "p00005": [("running", "done"), ("running", "done"), ("running", "dead")],  # dead at the last step
    "p00006": [],  # missing: nothing has happened (queued at the first step)
    "p00007": [("running", "done")],  # predict queued
    "p00008": [("running", "dead")],
    "p00009": [("running", "dead")],
}
EXPECTED = {  # step -> (waiting, blocked, queued, running, failed, dead, done)
    "create_windows": (0, 0, 1, 0, 0, 3, 6),
    "predict": (1, 3, 1, 1, 1, 0, 3),
    "postprocess": (4, 3, 0, 0, 0, 1, 2),
    "combine": (0, 1, 0, 0, 0, 0, 0),
}
EXPECTED_PARTITIONS = {
    "p00000": "done",
    "p00001": "done",
    "p00002": "running",
    "p00003": "failed",
    "p00004": "dead",
    "p00005": "dead",
    "p00006": "queued",
    "p00007": "running",
    "p00008": "dead",
    "p00009": "dead",
}


def build_scenario(root: Path) -> JobManifest:
    manifest = make_job(root, len(SCENARIO))
    recent = 0
    for pid, steps in SCENARIO.items():
        for step, states in zip(STEPS, steps, strict=False):
            error = {
                "create_windows": f"RuntimeError: no imagery for partition {pid}",
                "predict": "RuntimeError: CUDA out of memory",
                "postprocess": "RuntimeError: disk full",
            }[step]
            # Three create_windows done markers in the rate window, the rest an hour ago.
            in_window = step == "create_windows" and "done" in states and recent < 3
            recent += in_window
            # A task still running had its heartbeat a moment ago (older, it would be stalled).
            age = 60 if in_window else 20 if states == ("running",) else 3500
            mark(root, step, pid, *states, at=NOW - age, error=error)
    return manifest


@pytest.fixture
def job(tmp_path: Path) -> Path:
    root = tmp_path / "job"
    build_scenario(root)
    with open_queue(f"local://{root}/queue.db", create=True) as q:
        for topic in set(TOPICS.values()):
            q.setup(topic, topic)
        q.publish("st-cpu", [Outgoing(b"a"), Outgoing(b"b")])
        q.publish("st-gpu", [Outgoing(b"c")])
        q.pull("st-cpu", lease_seconds=600)  # one in flight
        q.dead_letter(q.pull("st-gpu", lease_seconds=600)[0], "RuntimeError: CUDA out of memory")
    return root


def test_counts_match_exactly_per_step_and_state(job: Path) -> None:
    result = collect(str(job), now=NOW)
    got = {
        s.step: tuple(s.counts[c] for c in ("waiting", "blocked", "queued", "running", "failed", "dead", "done"))
        for s in result.steps
    }
    assert got == EXPECTED
    assert [s.total for s in result.steps] == [10, 10, 10, 1]
    assert result.partitions == EXPECTED_PARTITIONS
    assert result.tasks["combine"] == {JOB_PARTITION: "blocked"}
    assert not result.finished


def test_throughput_and_eta_come_from_recent_done_markers(job: Path) -> None:
    result = collect(str(job), now=NOW)
    create, predict = result.steps[0], result.steps[1]
    assert create.rate == pytest.approx(3 / (RATE_WINDOW / 60))  # 3 done in the last 10 minutes
    assert create.eta_seconds == pytest.approx(1 / create.rate * 60)  # one queued task left
    assert predict.rate == 0 and predict.eta_seconds is None  # nothing recent: stalled
    eta, unknown = result.eta()
    assert eta == pytest.approx(create.eta_seconds)
    assert unknown == ["predict", "postprocess"]


def test_backlog_comes_from_the_embedded_queue(job: Path) -> None:
    backlog = {b.topic: b for b in collect(str(job), now=NOW).backlog}
    assert backlog["st-cpu"].steps == ["create_windows", "postprocess"]
    cpu, gpu = backlog["st-cpu"].counts, backlog["st-gpu"].counts
    assert cpu is not None and (cpu.backlog, cpu.in_flight) == (1, 1)
    assert cpu.oldest_unacked_seconds is not None and cpu.oldest_unacked_seconds >= 0
    assert gpu is not None and (gpu.backlog, gpu.in_flight) == (0, 0)
    assert (backlog["st-gpu"].dead_letters, backlog["st-cpu"].dead_letters) == (1, 0)


def test_failure_reasons_are_grouped_with_numbers_ignored(job: Path) -> None:
    result = collect(str(job), now=NOW)
    groups = [(g.count, g.state, g.step, g.reason) for g in result.failures]
    assert groups == [
        (3, "dead", "create_windows", "RuntimeError: no imagery for partition p00004"),
        (1, "dead", "postprocess", "RuntimeError: disk full"),
        (1, "failed", "predict", "RuntimeError: CUDA out of memory"),
    ]
    assert result.failures_total == result.failures_read == 5


def test_render_shows_each_step_row_and_the_queue(job: Path) -> None:
    text = render(collect(str(job), now=NOW))
    rows = {
        line.split()[0]: line.split() for line in text.splitlines() if line.split()[:1] and line.split()[0] in EXPECTED
    }
    for step, counts in EXPECTED.items():
        cells = [int(n) for n in rows[step][3:11]]
        assert cells[4] == 0, rows[step]  # stalled
        assert tuple(cells[:4] + cells[5:]) == counts, rows[step]
    assert "3  dead    create_windows  error  RuntimeError: no imagery for partition p00004  (e.g. p00004)" in text
    assert "st-gpu: 1 dead letters that are not this job's tasks" in text  # "c" is no task
    assert "eta: 3m20s at least (no throughput yet in predict, postprocess)" in text


def test_queued_tasks_on_an_empty_queue_are_reported_lost(tmp_path: Path) -> None:
    root = tmp_path / "job"
    make_job(root, 3)
    with open_queue(f"local://{root}/queue.db", create=True) as q:
        for topic in set(TOPICS.values()):
            q.setup(topic, topic)
    result = collect(str(root), now=NOW)
    assert result.lost() == 3
    assert "3 queued tasks but the queue is empty" in render(result)


def test_pubsub_backlog_is_reported_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "job"
    make_job(root, 2, queue="pubsub://some-project")
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-such-key.json"))
    result = collect(str(root), now=NOW)
    backlog, dead_letters = result.queue_note.split("; ", 1)
    assert backlog == f"{PUBSUB_BACKLOG_NOTE}: no Google credentials for Cloud Monitoring"
    assert dead_letters.startswith("dead letters not read: no Google Cloud credentials")
    assert result.lost() == 0
    assert result.queue_note in render(result)


def test_finished_job_says_so(tmp_path: Path) -> None:
    root = tmp_path / "job"
    make_job(root, 2)
    for pid in ("p00000", "p00001"):
        for step in STEPS:
            mark(root, step, pid, "running", "done")
    mark(root, "combine", JOB_PARTITION, "running", "done")
    result = collect(str(root))
    assert result.finished and result.eta() == (None, [])
    assert "finished: every task is done" in render(result)


def test_cli_status_prints_the_report(job: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["status", "--job-root", str(job)]) == 0
    out = capsys.readouterr().out
    assert "job job-test" in out and "create_windows" in out


def test_watch_stops_when_nothing_is_left_to_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "job"
    make_job(root, 1)
    for step in STEPS:
        mark(root, step, "p00000", "running", "done")
    mark(root, "combine", JOB_PARTITION, "running", "done")
    assert status(str(root), watch=True, interval=0.01).finished
    assert "finished" in capsys.readouterr().out


def write_bench_job(root: Path, partitions: int, steps: list[str]) -> int:
    """A job of ``partitions`` x ``steps`` tasks, marker files written directly (as fast as possible).

    Every task that started has a running marker; most are done, one in 50 failed and one
    in 200 dead, so the listing is as large as a real job's.
    """
    manifest = make_job(root, partitions, steps)
    files = 0
    for s, step in enumerate(steps):
        folder = root / "markers" / step
        folder.mkdir(parents=True)
        for i, pid in enumerate(manifest.partition_ids()):
            if (i + s) % 200 == 0:
                states = ("running", "dead")
            elif (i + s) % 50 == 0:
                states = ("running", "failed")
            else:
                states = ("running", "done")
            task = make_task(manifest.job_id, str(root), step, pid)
            for state in states:
                payload = {
                    "task": {"partition": pid},
                    "state": state,
                    "time": NOW,
                    "kind": "error",
                    "error": f"RuntimeError: failed {pid}",
                }
                (folder / f"{task.task_id}.{state}.json").write_text(json.dumps(payload))
                files += 1
    return files


def test_status_of_10000_tasks_takes_under_a_few_seconds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    steps = ["create_windows", "prepare", "ingest", "materialize", "predict"]
    files = write_bench_job(tmp_path / "job", 2000, steps)
    start = time.perf_counter()
    result = collect(str(tmp_path / "job"))
    text = render(result)
    elapsed = time.perf_counter() - start
    assert sum(s.total for s in result.steps) == 10_001 and files == 20_000
    assert text
    with capsys.disabled():
        print(f"\nstatus of 10,001 tasks ({files} marker files, local disk): {elapsed:.2f} s")
    assert elapsed < 5.0


def test_throughput_of_a_large_step_is_estimated_from_a_sample_of_done_markers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above RATE_SAMPLE tasks a step, only an even sample of done markers is stat'ed; the rate stays right."""
    from rslp import storage
    from rslp.status import model

    monkeypatch.setattr(model, "RATE_SAMPLE", 100)
    root = tmp_path / "job"
    make_job(root, 800, ["create_windows"])
    for i in range(800):  # a quarter finished in the last 10 minutes, the rest an hour ago
        mark(root, "create_windows", f"p{i:05d}", "done", at=NOW - 60 if i % 4 == 0 else NOW - 3500)
    stats: list[str] = []
    real = storage._stat_mtime
    monkeypatch.setattr(storage, "_stat_mtime", lambda entry: stats.append(entry.name) or real(entry))
    (step, _) = collect(str(root), now=NOW).steps
    assert step.counts["done"] == 800 and 50 <= len(stats) <= 200
    assert step.rate == pytest.approx(200 / (RATE_WINDOW / 60), rel=0.35)


def test_status_escapes_control_characters_from_markers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A reason with terminal escapes (OSC 52 clipboard write, a cursor move, a fake line) prints inert."""
    root = tmp_path / "job"
    make_job(root, 2)
    mark(root, "create_windows", "p00000", "running", "dead", error="boom\x1b]52;c;cHduZWQ=\x07\x1b[1A\rjob finished")
    status(str(root))
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out
    assert "boom\\x1b]52;c;cHduZWQ=\\x07" in out


def test_running_task_without_heartbeat_for_two_leases_is_stalled(tmp_path: Path) -> None:
    root = tmp_path / "job"
    make_job(root, 3)
    ledger = JobRoot(root)
    alive, dead, handed_back = (make_task("job-test", str(root), "create_windows", f"p0000{i}") for i in range(3))
    ledger.mark(alive, "running", worker="w-alive", lease_seconds=15.0)
    ledger.mark(dead, "running", worker="w-killed", lease_seconds=15.0)
    ledger.mark(handed_back, "running", worker="w-preempted", lease_seconds=15.0, handed_back="SIGTERM")
    for task, age in ((alive, 10), (dead, 31), (handed_back, 3000)):
        path = Path(ledger.marker_path("create_windows", task.task_id, "running").path)
        os.utime(path, (NOW - age, NOW - age))
    result = collect(str(root), now=NOW)
    assert result.tasks["create_windows"] == {"p00000": "running", "p00001": "stalled", "p00002": "queued"}
    assert result.workers()["st-cpu"] == {"w-alive"}
    text = render(result)
    assert "stalled tasks (1): no heartbeat for two leases" in text
    assert re.search(r"create_windows +p00001 +w-killed +31s", text)
    assert "workers  st-combine 0, st-cpu 1, st-gpu 0" in text
