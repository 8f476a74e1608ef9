"""What a new user meets first: typos, --help, bare flags, pipes, and the commands the CLI prints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rslp import cli
from rslp import main as rslp_main
from rslp.dlq import dlq_show
from rslp.errors import ExitCode, QueueResourceError
from rslp.jobroot import JobRoot
from rslp.pipeline.job import JOB_PARTITION, make_task
from rslp.queue import Outgoing, open_queue
from rslp.queue.pubsub import PubSubQueue
from rslp.task import decode_task
from tests.shell import hints, run_printed, shell_env

REPO = Path(__file__).resolve().parents[2]
#: Generous: a CLI start-up is about a second here, several on a loaded machine.
CEILING = 120


def rslp_argv(words: list[str]) -> list[str]:
    """A printed ``rslp ...`` command as argv for this checkout (``rslp`` is the console script of rslp.cli)."""
    assert words[0] == "rslp", words
    return [sys.executable, "-m", "rslp.cli", *words[1:]]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def test_a_typo_names_the_unknown_command_and_suggests_the_closest(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["wroker"]) == ExitCode.USAGE
    assert capsys.readouterr().err.strip() == (
        "rslp: unknown command 'wroker'; did you mean 'rslp worker'? (rslp --help lists them)"
    )
    assert cli.main(["dlq", "lst"]) == ExitCode.USAGE
    assert "did you mean 'rslp dlq list'?" in capsys.readouterr().err


def test_help_on_a_project_lists_its_workflows(capsys: pytest.CaptureFixture[str]) -> None:
    assert rslp_main.main(["common", "--help"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "common: " in out and "write_file" in out and "pipeline:" not in out


def test_boolean_flags_work_bare_and_with_a_value() -> None:
    parser, _ = cli.build_parser("status")
    assert parser.parse_args(["--job_root", "j", "--watch"]).watch is True
    assert parser.parse_args(["--watch", "--job_root", "j"]).watch is True
    assert parser.parse_args(["--job_root", "j", "--watch", "false"]).watch is False
    assert parser.parse_args(["--job_root", "j", "--map", "true"]).map == "true"  # not a boolean: left alone
    worker, _ = cli.build_parser("worker")  # a boolean field of the worker's settings model
    assert worker.parse_args(["--queue", "q", "--allow_diagnostics", "--retries", "1"]).allow_diagnostics is True
    assert (
        worker.parse_args(
            ["--queue", "q", "--manage_scratch_dir_on_data_disk", "False"]
        ).manage_scratch_dir_on_data_disk
        is False
    )


def test_a_bare_dry_run_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"local://{tmp_path / 'q.db'}"
    with open_queue(url, create=True) as q:
        q.setup("bare", "bare")
        q.publish("bare", [Outgoing(b"not a task")])
        [message] = q.pull("bare", 30)
        q.dead_letter(message, "malformed")
    assert cli.main(["dlq", "replay", "--queue", url, "--subscription", "bare", "--all", "--dry_run"]) == ExitCode.OK
    assert "dry run: nothing changed" in capsys.readouterr().out


def test_dlq_show_says_unknown_for_the_created_time_of_an_ancestor_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"local://{tmp_path / 'q.db'}"
    ancestor = {"project": "common", "workflow": "write_file", "args": ["/tmp/x", "abc"]}
    with open_queue(url, create=True) as q:
        q.setup("old", "old")
        q.publish("old", [Outgoing(json.dumps(ancestor).encode())])
        [message] = q.pull("old", 30)
        q.dead_letter(message, "boom")
    dlq_show(decode_task(json.dumps(ancestor).encode()).task_id, queue=url, subscription="old")
    assert '"created": "unknown"' in capsys.readouterr().out


def finished_job(demo: Path, job_root: Path) -> subprocess.CompletedProcess[str]:
    """write-jobs run as a user runs it; then every task is marked done, as after a finished run."""
    result = subprocess.run(
        [
            *rslp_argv(["rslp", "write-jobs"]),
            *("--config", str(demo / "pipeline.yaml"), "--request", str(demo / "request.geojson")),
            *("--job_root", str(job_root)),
        ],
        capture_output=True,
        text=True,
        env=env(),
        timeout=CEILING,
    )
    assert result.returncode == 0, result.stderr
    ledger = JobRoot(job_root)
    manifest = ledger.read_manifest()
    for pid in manifest.partition_ids():
        for step in manifest.steps:
            ledger.mark(make_task(manifest.job_id, str(job_root), step, pid), "done")
    for step in manifest.job_steps:
        ledger.mark(make_task(manifest.job_id, str(job_root), step, JOB_PARTITION), "done")
    return result


@pytest.mark.slow  # runs every printed command, a whole job included
def test_every_command_write_jobs_prints_runs_as_printed(demo_copy: Path, tmp_path: Path) -> None:
    printed = finished_job(demo_copy, tmp_path / "job").stdout
    found = hints(printed)
    assert set(found) == {"watch it", "run workers"}, printed
    assert "--job_roots" not in found["run workers"]  # a worker accepts local job roots as it is
    for command in found.values():
        # The worker drains the (already done) tasks and exits when idle; watch ends on a finished job.
        result = run_printed(command, shell_env(), CEILING)
        assert result.returncode == 0, f"{command}\n{result.stderr}"


def test_a_reader_that_stops_early_gets_no_traceback(demo_copy: Path, tmp_path: Path) -> None:
    job_root = tmp_path / "job"
    finished_job(demo_copy, job_root)
    proc = subprocess.Popen(
        rslp_argv(["rslp", "status", "--job_root", str(job_root)]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    assert proc.stdout is not None
    proc.stdout.close()  # like `| head` that has already exited: every write meets a closed pipe
    _, err = proc.communicate(timeout=CEILING)
    assert proc.returncode == 0 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_no_google_credentials_says_both_ways_out(monkeypatch: pytest.MonkeyPatch) -> None:
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    def no_credentials(*args: object, **kwargs: object) -> None:
        raise DefaultCredentialsError("Your default credentials were not found. To set up ... (a long paragraph)")

    monkeypatch.setattr(google.auth, "default", no_credentials)
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    with pytest.raises(QueueResourceError, match=r"application-default login.*export PUBSUB_EMULATOR_HOST=127"):
        PubSubQueue("a-project").subscriber  # noqa: B018 - creating the client is what fails


def write_jobs_args(demo: Path, job_root: Path) -> list[str]:
    return [
        *("write-jobs", "--config", str(demo / "pipeline.yaml"), "--request", str(demo / "request.geojson")),
        *("--job_root", str(job_root)),
    ]


def test_ctrl_c_while_write_jobs_publishes_is_one_line_and_a_rerun_finishes(
    demo_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rslp.pipeline import write_jobs as module

    def ctrl_c(*args: object) -> int:
        raise KeyboardInterrupt

    job_root = tmp_path / "job"
    with monkeypatch.context() as m:
        m.setattr(module, "_publish", ctrl_c)
        assert cli.main(write_jobs_args(demo_copy, job_root)) == ExitCode.INTERRUPTED
    job_id = JobRoot(job_root).read_manifest().job_id
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"rslp write-jobs: interrupted after writing job {job_id}, while publishing its tasks;")
    assert "rerun the same command" in err
    assert cli.main(write_jobs_args(demo_copy, job_root)) == ExitCode.OK
    assert f"job {job_id}: 4 partitions, 4 tasks published" in capsys.readouterr().out


@pytest.mark.slow  # plans 24,000 partitions first
def test_ctrl_c_in_write_jobs_prints_no_traceback(demo_copy: Path, tmp_path: Path) -> None:
    # 24,000 partitions: writing and publishing them takes seconds after the "planned" log line (3.8 s
    # measured; a 428-partition job was done before the signal landed).
    square = [[-124.4, 36.3], [-120.4, 36.3], [-120.4, 40.3], [-124.4, 40.3], [-124.4, 36.3]]
    feature = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [square]}}
    (demo_copy / "request.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    proc = subprocess.Popen(
        rslp_argv(["rslp", *write_jobs_args(demo_copy, tmp_path / "job")]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    assert proc.stderr is not None
    assert '"event": "planned"' in proc.stderr.readline()  # records and header being written, then publishing
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=CEILING)
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("rslp write-jobs: interrupted"), err


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["worker", "--queue", "local:///x.db", "--subscriptions", "s"],
            "unknown flag --subscriptions; did you mean --subscription?",
        ),
        (
            ["write-jobs", "--config", "c", "--requst", "r", "--job_root", "j"],
            "unknown flag --requst; did you mean --request?",
        ),
        (["write-jobs", "--config", "c", "--request", "r"], "--job_root is required"),
        (
            ["worker", "--queue", "local:///x.db", "--subscription", "s", "--idle_timeout", "soon"],
            "rslp worker: error: --idle_timeout: Expected a float; got soon",
        ),
        (
            ["worker", "--queue", "local:///x.db", "--subscription", "s", "--lease_seconds", "0"],
            "rslp worker: error: --lease_seconds: Input should be greater than or equal to 1; got 0",
        ),
    ],
)
def test_a_flag_mistake_is_one_line_naming_the_flag_as_typed(
    argv: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == ExitCode.USAGE
    out = capsys.readouterr()
    assert out.out == "" and out.err.count("\n") == 1 and line in out.err, out.err


def test_a_queue_url_of_another_scheme_names_the_accepted_forms(
    demo_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [*write_jobs_args(demo_copy, tmp_path / "job"), "--queue", f"sqlite:///{tmp_path}/q.db"]
    assert cli.main(argv) == ExitCode.USAGE
    assert "is not pubsub://PROJECT_ID or local://PATH/queue.db" in capsys.readouterr().err


def test_status_of_a_rolling_root_that_does_not_exist_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["status", "--root", str(tmp_path / "nope")]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert (
        err == f"rslp status: error: rolling root {tmp_path / 'nope'} does not exist (rslp rolling --root makes one)\n"
    )
