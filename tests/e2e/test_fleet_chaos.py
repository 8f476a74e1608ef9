"""Chaos: a fleet whose workers are killed every few seconds still finishes its job on its own."""

from __future__ import annotations

import contextlib
import json
import random
import signal
import time
import uuid
from pathlib import Path

import pytest

from bench.pipeline_queues import demo_variant
from rslp.jobroot import JobRoot
from rslp.pipeline.config import load_pipeline_config, subscriptions
from rslp.pipeline.job import Job
from rslp.pipeline.write_jobs import write_jobs
from rslp.queue import open_queue
from tests.conftest import PROJECT
from tests.integration.workers import WorkerProc, dead_letters

pytestmark = pytest.mark.slow

#: Partitions of 64 px: 56 partitions over four scenes (each scene shared by about 14).
CELL_SIZE = 64
#: A scene's download: long enough that kills land on claim holders, as in production.
FETCH_SECONDS = 5.0
#: How long workers are killed for (a kill every 3.5 s on average: about 25), and how many run at once
#: (the issue's chaos run, shortened). Alone on a 2-core machine the job finishes within it (90-100 s
#: measured); under the suite's load it finishes after, as the chaos itself costs CPU for as long as it lasts.
CHAOS_SECONDS = 90.0
WORKERS = 3
#: After the chaos stops, the job has this long to finish with nobody's help.
FINISH_SECONDS = 120.0


def test_a_fleet_whose_workers_are_killed_every_few_seconds_finishes_the_job_on_its_own(
    emulator_host: str, tmp_path: Path
) -> None:
    """The demo at 64 px partitions (four scenes, each shared by many partitions, each
    fetched in 5 s) on the Pub/Sub emulator, three workers, one SIGKILLed or SIGTERMed
    every 2-5 s and replaced: every partition and combine finish, nothing is dead-lettered."""
    rng = random.Random(25)
    folder = tmp_path / "demo"
    folder.mkdir()
    config = demo_variant(folder, CELL_SIZE)
    dataset = json.loads((folder / "dataset.json").read_text())
    source = dataset["layers"]["image"]["data_source"]
    source["class_path"] = "rslp.testing.gated_files.GatedLocalFiles"
    source["init_args"]["fetch_seconds"] = FETCH_SECONDS
    (folder / "dataset.json").write_text(json.dumps(dataset))
    queue = f"pubsub://{PROJECT}-{uuid.uuid4().hex[:8]}"
    subs = subscriptions(*_steps_and_topics(config))
    with open_queue(queue, create=True) as q:
        for sub in subs:
            q.setup(sub, sub)
    job_root = str(tmp_path / "job")
    write_jobs(str(config), str(folder / "request.geojson"), job_root, queue=queue)

    def start() -> WorkerProc:
        return WorkerProc(queue, ",".join(subs), new_session=True, idle_timeout=600, cwd=tmp_path)

    workers = [start() for _ in range(WORKERS)]
    retired: list[WorkerProc] = []
    kills = {"SIGKILL": 0, "SIGTERM": 0}
    combine = Job.load(job_root).task("combine", "job")
    ledger = JobRoot(job_root)
    try:
        chaos_until = time.monotonic() + CHAOS_SECONDS
        while time.monotonic() < chaos_until and ledger.read(combine, "done") is None:
            time.sleep(rng.uniform(2, 5))
            i = rng.randrange(WORKERS)
            if rng.random() < 0.5:
                workers[i].kill_group()  # the worker and its task process, as a lost node
                kills["SIGKILL"] += 1
            else:
                workers[i].signal(signal.SIGTERM)  # preemption with notice
                workers[i].wait(timeout=30)
                kills["SIGTERM"] += 1
            retired.append(workers[i])
            workers[i] = start()
        calm = time.monotonic()
        while ledger.read(combine, "done") is None:
            assert time.monotonic() - calm < FINISH_SECONDS, f"the job did not finish on its own after {kills}"
            time.sleep(0.5)
        deliveries = max(int(e.get("delivery_attempt") or 0) for w in retired + workers for e in w.events)
        after = time.monotonic() - calm
        print(f"chaos {kills}; most deliveries of one message {deliveries}; finished {after:.0f} s after it stopped")
        job = Job.load(job_root)
        for partition in job.partition_ids():
            assert ledger.read(job.task("postprocess", partition), "done") is not None, partition
        assert not list(Path(job_root, "markers").glob("*/*.dead.json"))
        with open_queue(queue) as q:
            for sub in subs:
                assert not dead_letters(q, sub, lease=10, expect=1, timeout=2), sub
    finally:
        for w in workers:
            with contextlib.suppress(ProcessLookupError):
                w.kill_group()


def _steps_and_topics(config: Path) -> tuple[list[str], dict[str, str]]:
    pipeline = load_pipeline_config(config)
    return pipeline.partition_steps + pipeline.job_steps, pipeline.topics
