"""gs:// job roots against the GCS emulator: combine and observe on object storage, local queues, local imagery."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import rasterio
from rio_cogeo.cogeo import cog_validate
from upath import UPath

from rslp.pipeline.observe import class_counts
from rslp.pipeline.postprocess import RasterMerge
from rslp.pipeline.rslearn_ops import create_windows
from rslp.queue.placement import default_queue_url
from rslp.testing.gcs_emulator import running_gcs_emulator
from tests.unit.test_pipeline_postprocess import write_partition


def test_combine_and_observe_read_and_write_partition_files_on_gs(gcs_bucket: str, tmp_path: Path) -> None:
    job = UPath(f"{gcs_bucket}/jobs/{uuid.uuid4().hex[:8]}")
    sources = []
    for i in range(3):
        local = write_partition(tmp_path / f"p{i}.tif", 32610, 550400 + i * 640, 4180480, i)
        sources.append(job / "partition_outputs" / "prediction" / f"p{i}.tif")
        sources[-1].write_bytes(local.read_bytes())
    dest = job / "output" / "prediction.tif"
    RasterMerge().combine(iter(sources), dest)
    (tmp_path / "copy.tif").write_bytes(dest.read_bytes())
    assert cog_validate(str(tmp_path / "copy.tif"), strict=True)[0]
    with rasterio.open(tmp_path / "copy.tif") as f:
        assert f.width == 3 * 64 and f.crs.to_epsg() == 32610
    assert class_counts(str(dest)) == {0: 62 * 62, 1: 62 * 62, 2: 62 * 62}
    assert [p.name for p in dest.parent.iterdir()] == ["prediction.tif"], "no scratch left on the bucket"


def test_the_embedded_queue_of_a_gs_job_lives_on_local_disk_and_is_found_again() -> None:
    queue = default_queue_url("gs://bucket/jobs/j1")
    assert queue.startswith("local:///") and "gs:" not in queue and queue.endswith(".db")
    assert default_queue_url("gs://bucket/jobs/j1") == queue != default_queue_url("gs://bucket/jobs/j2")


def test_a_local_imagery_folder_stays_local_when_the_dataset_is_on_gs(gcs_bucket: str, demo_copy: Path) -> None:
    import json

    from rslp.pipeline.config import load_pipeline_config

    config = load_pipeline_config(str(demo_copy / "pipeline.yaml"))
    dataset_config = config.load_dataset_config()
    root = UPath(f"{gcs_bucket}/jobs/{uuid.uuid4().hex[:8]}/partitions/p00000")
    create_windows(root, dataset_config, "default", [])
    written = json.loads((root / "config.json").read_text())
    src_dir = written["layers"]["image"]["data_source"]["init_args"]["src_dir"]
    assert src_dir == f"file://{demo_copy}/data/images"


def test_the_gcs_emulator_points_gcsfs_at_itself_and_restores_the_environment() -> None:
    before = os.environ.get("STORAGE_EMULATOR_HOST")
    with running_gcs_emulator("rslp-other") as url:
        assert os.environ["STORAGE_EMULATOR_HOST"] == url
        assert os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] == "false"
        marker = UPath("gs://rslp-other/x.json")
        marker.write_text("{}")
        assert marker.read_text() == "{}"
    assert os.environ.get("STORAGE_EMULATOR_HOST") == before


def test_the_gcs_emulator_exits_when_the_process_that_started_it_is_killed(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    script = "from rslp.testing.gcs_emulator import running_gcs_emulator\n"
    script += "import os, time\nwith running_gcs_emulator() as url:\n"
    script += "    print(os.getpid(), url, flush=True)\n    time.sleep(600)\n"
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    _, url = parent.stdout.readline().split()
    port = url.rsplit(":", 1)[1]
    found = subprocess.run(["pgrep", "-f", f"gcs_emulator --serve {port} "], capture_output=True, text=True)
    (emulator,) = (int(pid) for pid in found.stdout.split())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and os.path.exists(f"/proc/{emulator}"):
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{emulator}"), "the orphaned emulator is still running"
