"""Rolling runs: periods, one job per period, publishing only what is missing, the catalog, history."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rslp.errors import PermanentError
from rslp.jobroot import JobRoot
from rslp.pipeline.catalog import with_drift
from rslp.pipeline.job import make_task
from rslp.pipeline.rolling import periods, rolling
from rslp.queue.placement import default_queue_url
from rslp.status.history import PeriodRow, draw_history

PARTITION_STEPS = ["create_windows", "prepare", "ingest", "materialize", "predict", "postprocess"]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def backlog(root: Path) -> int:
    from rslp.queue import open_queue

    with open_queue(default_queue_url(str(root))) as q:
        return sum(c.backlog for c in (q.counts(s) for s in ("demo-cpu", "demo-gpu", "demo-combine")) if c)


def test_periods_are_whole_utc_days_iso_weeks_or_months_that_have_ended() -> None:
    months = periods("month", utc(2026, 1, 20), utc(2026, 3, 15))
    assert [(p.name, p.span.start, p.span.end) for p in months] == [
        ("2026-01", utc(2026, 1, 1), utc(2026, 2, 1)),
        ("2026-02", utc(2026, 2, 1), utc(2026, 3, 1)),
    ]  # March has not ended yet
    weeks = periods("week", utc(2026, 1, 1), utc(2026, 1, 19))
    assert [(p.name, p.span.start.day) for p in weeks] == [("2026-W01", 29), ("2026-W02", 5), ("2026-W03", 12)]
    assert [p.name for p in periods("day", utc(2025, 12, 31, 13), utc(2026, 1, 2))] == ["2025-12-31", "2026-01-01"]
    assert periods("month", utc(2025, 12, 1), utc(2026, 1, 1))[0].span.end == utc(2026, 1, 1)


def test_rolling_makes_one_job_per_period_and_a_second_run_publishes_nothing(
    demo_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, request, root = str(demo_copy / "pipeline.yaml"), str(demo_copy / "request.geojson"), tmp_path / "root"
    assert rolling(config, request, str(root), "month", since="2026-01", until="2026-03") == 8
    assert (
        capsys.readouterr()
        .out.splitlines()[0]
        .startswith(
            f"rolling {root} every month: 2 periods (2 new, 0 resumed, 0 moving, 0 done, 0 without imagery); "
            f"8 tasks published on {default_queue_url(str(root))}"
        )
    )
    jan, feb = (JobRoot(root / name).read_manifest() for name in ("2026-01", "2026-02"))
    assert jan.time_range == (utc(2026, 1, 1), utc(2026, 2, 1)) and feb.time_range == (utc(2026, 2, 1), utc(2026, 3, 1))
    assert {p.time_range for p in JobRoot(root / "2026-02").partitions(feb)} == {feb.time_range}
    assert rolling(config, request, str(root), "month", since="2026-01", until="2026-03") == 0
    assert "(0 new, 0 resumed, 2 moving, 0 done, 0 without imagery); 0 tasks published" in capsys.readouterr().out
    assert backlog(root) == 8
    catalog = json.loads((root / "catalog.json").read_text())
    assert [(p["id"], p["status"], p["start_datetime"]) for p in catalog["periods"]] == [
        ("2026-01", "running", "2026-01-01T00:00:00+00:00"),
        ("2026-02", "running", "2026-02-01T00:00:00+00:00"),
    ]
    assert catalog["type"] == "Catalog" and catalog["rolling"]["every"] == "month"


def test_a_stalled_half_done_period_gets_only_its_missing_tasks_and_a_done_one_none(
    demo_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, request, root = str(demo_copy / "pipeline.yaml"), str(demo_copy / "request.geojson"), tmp_path / "root"
    rolling(config, request, str(root), "month", since="2026-01", until="2026-03")
    for name, partitions in (("2026-01", ["p00000", "p00001", "p00002", "p00003"]), ("2026-02", ["p00000"])):
        ledger = JobRoot(root / name)
        manifest = ledger.read_manifest()
        steps = PARTITION_STEPS + (["combine", "observe"] if name == "2026-01" else [])
        for partition in partitions:
            for step in steps:
                task = make_task(
                    manifest.job_id, manifest.job_root, step, "job" if step in ("combine", "observe") else partition
                )
                ledger.mark(task, "done", downstream=[])
    capsys.readouterr()
    assert rolling(config, request, str(root), "month", since="2026-01", until="2026-03", requeue_after=0) == 3
    out = capsys.readouterr().out
    assert "(0 new, 1 resumed, 0 moving, 1 done, 0 without imagery); 3 tasks published" in out


def test_a_period_without_imagery_is_skipped_and_tried_again_next_run(
    demo_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, request, root = str(demo_copy / "pipeline.yaml"), str(demo_copy / "request.geojson"), tmp_path / "root"
    assert rolling(config, request, str(root), "month", since="2025-04", until="2026-02") == 4
    printed = capsys.readouterr()
    assert "(1 new, 0 resumed, 0 moving, 0 done, 9 without imagery)" in printed.out
    assert not (root / "2025-12").exists() and (root / "2026-01" / "manifest.json").exists()
    # One summary line for the empty months, not a long log line each; and the commands to go on with.
    assert "no imagery in period" not in printed.err
    assert "  without imagery (tried again next run): 2025-04, 2025-05, ..., 2025-12" in printed.out
    found = dict(re.findall(r"^  ([a-z ]+): (\S*rslp .*)$", printed.out, flags=re.MULTILINE))
    assert found["watch it"].endswith(f"status --root {root}")
    assert found["run workers"].endswith(" --subscription demo-combine,demo-cpu,demo-gpu")  # local root: no pin


def test_rolling_cli_fails_non_zero_in_one_line(demo_copy: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "rslp.cli", "rolling", "--config", str(demo_copy / "pipeline.yaml")]
    command += ["--request", str(demo_copy / "request.geojson"), "--root", str(tmp_path / "root"), "--every", "month"]
    done = subprocess.run([*command, "--since", "last tuesday"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("rslp rolling: error: --since: 'last tuesday' is not an ISO 8601 time")


def test_a_rolling_root_is_for_one_config_request_and_cadence(demo_copy: Path, tmp_path: Path) -> None:
    config, request, root = str(demo_copy / "pipeline.yaml"), str(demo_copy / "request.geojson"), tmp_path / "root"
    rolling(config, request, str(root), "month", since="2026-01", until="2026-02")
    with pytest.raises(
        PermanentError, match=r"rolling.json: this rolling root is for .* every month, not .* every week"
    ):
        rolling(config, request, str(root), "week", since="2026-01", until="2026-02")


def test_drift_from_the_previous_period_is_computed_and_warned() -> None:
    base = {"threshold": 0.1, "warning_reference": None, "drift_reference": 0.0}
    rows = with_drift(
        [
            {**base, "id": "2026-01", "distribution": {"a": 0.5, "b": 0.5}},
            {**base, "id": "2026-02", "distribution": None},
            {**base, "id": "2026-03", "distribution": {"a": 0.3, "b": 0.7}},
        ]
    )
    assert [r["drift_previous"] for r in rows] == [None, None, pytest.approx(0.2)]
    assert rows[2]["previous"] == "2026-01" and "vs period 2026-01) exceeds the threshold 0.1" in rows[2]["warning"]
    assert rows[0]["warning"] is None
    figure = draw_history(
        [PeriodRow({**r, "start_datetime": None, "end_datetime": None, "status": "done"}, 1, 0, 1) for r in rows]
    )
    assert len(figure.axes) == 2


def test_the_example_ci_workflow_is_scheduled_and_calls_rolling_with_valid_flags() -> None:
    import re
    import shlex

    import yaml

    from rslp.cli import _normalize_flags, build_parser

    workflow = yaml.safe_load((Path(__file__).parents[2] / "scripts" / "rolling.github-workflow.yml").read_text())
    assert workflow[True]["schedule"][0]["cron"]  # YAML reads the key `on` as True
    commands = [step["run"] for step in workflow["jobs"]["enqueue"]["steps"] if "rslp rolling" in step.get("run", "")]
    (command,) = commands
    words = shlex.split(re.sub(r"\$\{\{ vars\.(\w+) \}\}", r"VAR_\1", command))
    assert words[:2] == ["rslp", "rolling"]
    parser, _ = build_parser("rolling")
    args = parser.parse_args(_normalize_flags(words[2:]))
    assert (args.every, args.since, args.queue) == ("month", "2026-01", "pubsub://VAR_GCP_PROJECT")


def test_status_takes_a_job_root_or_a_rolling_root_not_both(tmp_path: Path) -> None:
    from rslp.status.command import status

    with pytest.raises(PermanentError, match=r"give --job_root .* or --root"):
        status()
    with pytest.raises(PermanentError, match="not both or neither"):
        status(job_root=str(tmp_path), root=str(tmp_path))


def test_a_remote_rolling_root_needs_a_named_queue(demo_copy: Path) -> None:
    with pytest.raises(PermanentError, match=r"--queue: the rolling root gs://bucket/rolling is not on local disk"):
        rolling(
            str(demo_copy / "pipeline.yaml"),
            str(demo_copy / "request.geojson"),
            "gs://bucket/rolling",
            "month",
            "2026-01",
        )


def test_concurrent_catalog_writers_never_leave_a_torn_or_partial_catalog(demo_copy: Path, tmp_path: Path) -> None:
    import threading

    from upath import UPath

    from rslp.pipeline.catalog import write_catalog

    root = tmp_path / "root"
    rolling(
        str(demo_copy / "pipeline.yaml"), str(demo_copy / "request.geojson"), str(root), "month", "2026-01", "2026-03"
    )
    writers = [threading.Thread(target=lambda: [write_catalog(UPath(root)) for _ in range(15)]) for _ in range(3)]
    for w in writers:
        w.start()
    seen = []
    while any(w.is_alive() for w in writers):
        seen.append([p["id"] for p in json.loads((root / "catalog.json").read_text())["periods"]])
    for w in writers:
        w.join()
    assert seen and all(ids == ["2026-01", "2026-02"] for ids in seen)


def _forge_catalog(root: Path) -> None:
    """What someone who may write the root can leave in catalog.json: a done entry with a job root and
    outputs elsewhere, an entry without ``id``, and an entry for a period that does not exist."""
    catalog = json.loads((root / "catalog.json").read_text())
    catalog["periods"][0].update(
        status="done",
        job_root="http://attacker.invalid/job",
        outputs={"prediction": "http://attacker.invalid/out.tif"},
        distribution={"a": 0.5, "b": 0.5},
        warning_reference="",
    )
    catalog["periods"] += [{"status": "done"}, {**catalog["periods"][0], "id": "2030-01"}]
    (root / "catalog.json").write_text(json.dumps(catalog))


def test_a_forged_catalog_does_not_survive_a_rebuild_and_drift_comes_from_the_periods(
    demo_copy: Path, tmp_path: Path
) -> None:
    from upath import UPath

    from rslp.pipeline.catalog import write_catalog

    root = tmp_path / "root"
    rolling(
        str(demo_copy / "pipeline.yaml"), str(demo_copy / "request.geojson"), str(root), "month", "2026-01", "2026-03"
    )
    _forge_catalog(root)
    (root / "not-a-period").mkdir()
    (root / "not-a-period" / "manifest.json").write_text((root / "2026-01" / "manifest.json").read_text())
    for period, share in (("2026-01", 0.5), ("2026-02", 0.8)):
        (root / period / "output").mkdir(exist_ok=True)
        observed = {"distribution": {"a": share, "b": 1 - share}, "drift": None, "threshold": 0.1, "warning": None}
        (root / period / "output" / "observe.json").write_text(json.dumps(observed))
    jan, feb = write_catalog(UPath(root))["periods"]
    assert (jan["id"], jan["status"], jan["job_root"], jan["outputs"]) == (
        "2026-01",
        "running",
        str(root / "2026-01"),
        {},
    )
    assert feb["drift_previous"] == pytest.approx(0.3) and "vs period 2026-01" in feb["warning"]


def test_status_root_ignores_a_forged_catalog_and_markers_outside_the_plan(
    demo_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rslp.status.command import status

    root = tmp_path / "root"
    rolling(
        str(demo_copy / "pipeline.yaml"), str(demo_copy / "request.geojson"), str(root), "month", "2026-01", "2026-03"
    )
    _forge_catalog(root)
    manifest = JobRoot(root / "2026-01").read_manifest()
    for step in PARTITION_STEPS:  # done markers of partitions the job does not have
        for partition in ("p09999", "p10000"):
            task = make_task(manifest.job_id, manifest.job_root, step, partition)
            JobRoot(root / "2026-01").mark(task, "done", downstream=[])
    capsys.readouterr()
    rows = status(root=str(root))
    out = capsys.readouterr().out.splitlines()
    assert [r.period["id"] for r in rows] == ["2026-01", "2026-02"]
    assert out[2].split()[4:6] == ["0/26", "running"]


def test_status_root_shows_one_row_per_period_with_progress_and_failures(
    demo_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rslp.status.command import status

    root = tmp_path / "root"
    rolling(
        str(demo_copy / "pipeline.yaml"), str(demo_copy / "request.geojson"), str(root), "month", "2026-01", "2026-03"
    )
    manifest = JobRoot(root / "2026-01").read_manifest()
    ledger = JobRoot(root / "2026-01")
    ledger.mark(make_task(manifest.job_id, manifest.job_root, "create_windows", "p00000"), "done", downstream=[])
    ledger.mark(make_task(manifest.job_id, manifest.job_root, "create_windows", "p00001"), "dead", error="boom")
    capsys.readouterr()
    rows = status(root=str(root), plot=str(tmp_path / "history.png"))
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"rolling root {root}: 2 periods"
    assert out[2].split()[:6] == [
        "2026-01",
        "2026-01-01T00:00:00+00:00",
        "..",
        "2026-02-01T00:00:00+00:00",
        "1/26",
        "failed",
    ]
    assert out[3].split()[4:6] == ["0/26", "running"]
    assert len(rows) == 2 and (tmp_path / "history.png").stat().st_size > 5000


def test_a_period_marked_done_only_in_a_forged_catalog_is_still_resumed(
    demo_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, request, root = str(demo_copy / "pipeline.yaml"), str(demo_copy / "request.geojson"), tmp_path / "root"
    rolling(config, request, str(root), "month", "2026-01", "2026-03")
    _forge_catalog(root)  # says 2026-01 is done; its own files say otherwise
    capsys.readouterr()
    assert rolling(config, request, str(root), "month", "2026-01", "2026-03", requeue_after=0) == 8
    assert "(0 new, 2 resumed, 0 moving, 0 done, 0 without imagery); 8 tasks published" in capsys.readouterr().out
