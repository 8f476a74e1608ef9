"""The steps, run in-process in order on the real demo (real rslearn, real GeoTIFFs, real model)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyproj
import pytest
import rasterio
from upath import UPath

from rslp import registry
from rslp.errors import PermanentError
from rslp.jobroot import JobRoot, partition_id
from rslp.pipeline import predict as predict_module
from rslp.pipeline.demo import DEMO_DIR, DEMO_SCENE, ensure_scene, score
from rslp.pipeline.job import JOB_PARTITION, Job
from rslp.pipeline.rslearn_ops import open_dataset
from rslp.pipeline.write_jobs import write_jobs
from rslp.queue import open_queue
from rslp.task import Downstream, decode_task

# The whole demo job, step by step in this process: tens of seconds of CPU.
pytestmark = pytest.mark.slow

#: Measured 0.978 on the demo request (model trained on another synthetic scene).
ACCURACY_THRESHOLD = 0.95


def run_step(step: str, job_root: str, partition: str) -> list[Downstream]:
    """A step exactly as the worker runs it: registered workflow, CLI-string args."""
    return registry.get("pipeline", step).run(["--job_root", job_root, "--partition", partition])  # type: ignore[no-any-return]


def run_job_in_process(job_root: str) -> list[Downstream]:
    """Follow the downstream tasks from the queued first steps; returns every downstream seen."""
    with open_queue(str(JobRoot(job_root).read_manifest().queue)) as q:
        pending = [decode_task(m.data) for m in q.pull("demo-cpu", lease_seconds=60, max_messages=100)]
    seen: list[Downstream] = []
    while pending:
        task = pending.pop(0)
        out = run_step(task.step or "", job_root, task.partition or "")
        seen += out
        pending += [d.task for d in out]
    return seen


@pytest.fixture(scope="module")
def finished_job(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[Downstream]]:
    ensure_scene(DEMO_SCENE, DEMO_DIR / "data")
    predict_module._MODELS.clear()  # this process may have loaded models in other tests
    job_root = str(tmp_path_factory.mktemp("job"))
    write_jobs(str(DEMO_DIR / "pipeline.yaml"), str(DEMO_DIR / "request.geojson"), job_root)
    return job_root, run_job_in_process(job_root)


def request_bounds_utm() -> tuple[float, ...]:
    request = json.loads((DEMO_DIR / "request.geojson").read_text())
    to_utm = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:32610", always_xy=True)
    (ring,) = request["features"][0]["geometry"]["coordinates"]
    xs, ys = to_utm.transform(*zip(*ring, strict=True))
    return min(xs), min(ys), max(xs), max(ys)


def test_merged_output_matches_request_georeferencing_and_pattern(finished_job: tuple[str, list[Downstream]]) -> None:
    job_root, _ = finished_job
    (output,) = Job.load(job_root).output_paths()
    with rasterio.open(output.path) as f:
        assert f.crs.to_epsg() == 32610 and f.res == (10.0, 10.0) and f.nodata == 255
        left, bottom, right, top = request_bounds_utm()
        # The output is the request's bounding box snapped outward to the 10 m pixel grid.
        assert f.bounds.left <= left < f.bounds.left + 10 and f.bounds.right - 10 < right <= f.bounds.right
        assert f.bounds.bottom <= bottom < f.bounds.bottom + 10 and f.bounds.top - 10 < top <= f.bounds.top
        values = Counter(f.read(1).ravel().tolist())
    assert set(values) == {0, 1, 255}  # two classes inside the request, nodata outside
    assert score(output.path) > ACCURACY_THRESHOLD


def test_every_partition_chains_its_steps_and_the_last_asks_for_combine_once(
    finished_job: tuple[str, list[Downstream]],
) -> None:
    _, seen = finished_job
    steps = Counter(d.task.step for d in seen)
    assert steps == {
        "prepare": 4,
        "ingest": 4,
        "materialize": 4,
        "predict": 4,
        "postprocess": 4,
        "combine": 1,
        "observe": 1,
    }
    combine = next(d for d in seen if d.task.step == "combine")
    assert combine.topic == "demo-combine" and combine.task.partition == JOB_PARTITION
    assert {d.topic for d in seen if d.task.step == "predict"} == {"demo-gpu"}


def test_the_model_is_loaded_once_for_all_partitions(finished_job: tuple[str, list[Downstream]]) -> None:
    assert len(predict_module._MODELS) == 1


def test_rerunning_steps_after_a_partial_predict_gives_identical_output(
    finished_job: tuple[str, list[Downstream]],
) -> None:
    job_root, _ = finished_job
    job = Job.load(job_root)
    (output,) = job.output_paths()
    before = output.read_bytes()
    dataset = open_dataset(job.dataset_root("p00001"))
    windows = dataset.load_windows(groups=["default"])
    for window in windows[::2]:  # as if predict died halfway through the partition
        shutil.rmtree(window.window_root / "layers" / "output")
    (job.partition_output_dir("prediction") / "p00001.tif").unlink()
    for step in ("create_windows", "prepare", "ingest", "materialize", "predict", "postprocess"):
        run_step(step, job_root, "p00001")
    run_step("combine", job_root, JOB_PARTITION)
    assert output.read_bytes() == before


def test_postprocess_asks_for_combine_only_when_every_partition_has_arrived(
    finished_job: tuple[str, list[Downstream]],
) -> None:
    job_root, seen = finished_job
    assert [d.task.step for d in seen].count("combine") == 1  # only the last of the 4 partitions asked
    job = Job.load(job_root)
    group = job.root / "fanin" / "0" / "000000"
    assert sorted(p.name for p in group.iterdir()) == ["000000", "000001", "000002", "000003"]
    asker = partition_id(int((job.root / "fanin" / "ready").read_text()))
    assert [d.task.step for d in run_step("postprocess", job_root, asker)] == ["combine"]  # a redelivery asks again
    assert run_step("postprocess", job_root, "p00002" if asker != "p00002" else "p00001") == []  # no one else
    (group / "000003").unlink()  # as if p00003 had not finished yet
    try:
        assert run_step("postprocess", job_root, "p00002") == []
    finally:
        (group / "000003").write_text("")


def test_request_outside_the_imagery_fails_permanently_at_prepare(tmp_path: Path) -> None:
    ensure_scene(DEMO_SCENE, DEMO_DIR / "data")
    request = json.loads((DEMO_DIR / "request.geojson").read_text())
    for feature in request["features"]:
        feature["geometry"]["coordinates"] = [
            [[x + 0.2, y] for x, y in ring] for ring in feature["geometry"]["coordinates"]
        ]
    (tmp_path / "outside.geojson").write_text(json.dumps(request))
    job_root = str(tmp_path / "job")
    write_jobs(str(DEMO_DIR / "pipeline.yaml"), str(tmp_path / "outside.geojson"), job_root)
    partition = next(JobRoot(job_root).read_manifest().partition_ids())
    run_step("create_windows", job_root, partition)
    with pytest.raises(PermanentError) as e:
        run_step("prepare", job_root, partition)
    message = str(e.value)
    assert message.startswith(f"{tmp_path}/outside.geojson: partition {partition}: none of its")
    assert "layers.image: rslp.pipeline.dated_files.DatedLocalFiles" in message and "\n" not in message


def test_a_resolved_rslp_variable_never_shows_in_a_fresh_workers_prepare_error(
    demo_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 25.10: rslearn resolves ${RSLP_*} itself, so prepare's reason once printed the value (init_args)."""
    secret = str(DEMO_DIR / "data" / "images")  # stands in for a bucket path or a token-bearing URL
    monkeypatch.setenv("RSLP_TEST_IMAGERY", secret)
    dataset = json.loads((demo_copy / "dataset.json").read_text())
    dataset["layers"]["image"]["data_source"]["init_args"]["src_dir"] = "${RSLP_TEST_IMAGERY}"
    (demo_copy / "dataset.json").write_text(json.dumps(dataset))
    request = json.loads((DEMO_DIR / "request.geojson").read_text())
    for feature in request["features"]:
        feature["geometry"]["coordinates"] = [[[x + 0.2, y] for x, y in r] for r in feature["geometry"]["coordinates"]]
    (tmp_path / "outside.geojson").write_text(json.dumps(request))
    job_root = str(tmp_path / "job")
    write_jobs(str(demo_copy / "pipeline.yaml"), str(tmp_path / "outside.geojson"), job_root)
    partition = next(JobRoot(job_root).read_manifest().partition_ids())
    run_step("create_windows", job_root, partition)
    fresh = (  # a new process: nothing in it has loaded dataset.json, as in a worker that only prepares
        "from rslp import registry; from rslp.text import clip\n"
        "try:\n"
        f"    registry.get('pipeline', 'prepare').run(['--job_root', {job_root!r}, '--partition', {partition!r}])\n"
        "except Exception as e:\n"
        "    print(clip(str(e)))\n"
    )
    done = subprocess.run([sys.executable, "-c", fresh], capture_output=True, text=True, timeout=300, check=True)
    assert "none of its" in done.stdout and "layers.image: rslp.pipeline.dated_files.DatedLocalFiles" in done.stdout
    assert secret not in done.stdout + done.stderr


def test_a_step_for_an_unknown_partition_or_job_root_is_permanent(
    finished_job: tuple[str, list[Downstream]], tmp_path: Path
) -> None:
    job_root, _ = finished_job
    with pytest.raises(PermanentError, match=r"manifest.json: partition_count: no partition 'p99999' \(the job has 4"):
        run_step("prepare", job_root, "p99999")
    with pytest.raises(PermanentError, match=r"no job manifest"):
        run_step("prepare", str(tmp_path), "p00000")
    assert UPath(job_root).exists()


def test_observe_records_class_distribution_and_drift(finished_job: tuple[str, list[Downstream]]) -> None:
    job_root, _ = finished_job
    result = json.loads((Path(job_root) / "output" / "observe.json").read_text())
    assert set(result["distribution"]) == {"b_brighter", "a_brighter"}
    assert result["metric"] == "total variation distance"
    assert 0 <= result["drift"] < 0.1 and result["warning"] is None
    assert (Path(job_root) / "output" / "observe.png").stat().st_size > 1000


def test_a_period_output_comes_from_that_period_imagery(
    finished_job: tuple[str, list[Downstream]], tmp_path: Path
) -> None:
    """The demo's default job is January; a February job scores against February's labels only."""
    january, _ = finished_job
    job_root = str(tmp_path / "february")
    write_jobs(
        str(DEMO_DIR / "pipeline.yaml"), str(DEMO_DIR / "request.geojson"), job_root, start="2026-02", end="2026-03"
    )
    run_job_in_process(job_root)
    (output,) = Job.load(job_root).output_paths()
    (jan_output,) = Job.load(january).output_paths()
    labels = DEMO_DIR / "data" / "labels"
    assert score(output.path, labels / "2026-02-15") > ACCURACY_THRESHOLD
    assert score(output.path, labels / "2026-01-15") < 0.7  # another month's map
    assert score(jan_output.path, labels / "2026-01-15") > ACCURACY_THRESHOLD
    observed = json.loads((Path(job_root) / "output" / "observe.json").read_text())
    assert observed["drift"] > 0.1 and "exceeds the threshold" in observed["warning"]  # February is drier
