"""The ``pipeline`` project's workflows: one handler per step, each a thin layer.

A step is a handler of a :class:`StepContext`: its task (the envelope's typed job root,
partition and step) and its job opened once (the small header, which the worker's guard
already read to admit the task, and the process's pipeline config; its partition's
record only when it needs the footprint). It runs its rslearn operation on its
partition (:mod:`~rslp.pipeline.rslearn_ops`, :mod:`~rslp.pipeline.predict`,
:mod:`~rslp.pipeline.postprocess`), which checks what was written, and returns the
downstream task: the partition's next step, and after the last partition's postprocess,
combine. The worker then writes the done marker and publishes the downstream tasks;
a step never writes markers itself.

A message runs :func:`run_task` with the task itself: nothing is parsed. One step of
one partition runs by hand through :func:`by_hand`
(``python -m rslp.main pipeline STEP --job_root J --partition P``).

Every step is idempotent: a rerun after a crash skips what is done and gives the same
output. Bad input raises :class:`~rslp.errors.PermanentError` (one line naming the file
and field); anything else is retried by the worker.

This module imports neither torch nor rslearn at import time: a worker that never
predicts must start fast.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pydantic import ValidationError
from upath import UPath

from rslp import log
from rslp.errors import PermanentError
from rslp.jobroot import JobManifest, JobRoot
from rslp.pipeline.job import JOB_PARTITION, Job
from rslp.task import Downstream, Task

logger = log.get(__name__)

#: What the steps import on first use, for a task process to import while it waits for its
#: first task (:mod:`rslp.worker.runner`): rslearn's dataset, handler and local data-source
#: code, shapely, pyproj and rasterio with them; about 0.5-1.2 s that the first task would pay.
#: Not :mod:`~rslp.pipeline.predict` (torch and Lightning, seconds): only a predict task needs them.
PRELOAD = (
    "rslp.pipeline.rslearn_ops",
    "rslp.pipeline.partition",
    "rslp.pipeline.tiles",
    "rslp.pipeline.postprocess",
    "rslp.pipeline.fanin",
    "rslearn.main",
    "rslearn.data_sources.local_files",
)


@dataclass(frozen=True)
class StepContext:
    """What a step handles: its task and its job, opened once for the task."""

    task: Task
    job: Job

    @property
    def partition(self) -> str:
        """The task's partition (:data:`JOB_PARTITION` for a per-job step)."""
        return self.task.partition or ""


def create_windows(ctx: StepContext) -> list[Downstream]:
    """Split the partition's footprint into rslearn windows (the pipeline's window_partitioner), with its time range."""
    from rslp.pipeline import rslearn_ops
    from rslp.pipeline.partition import from_geojson

    started = time.monotonic()
    job, partition = ctx.job, ctx.partition
    entry = job.partition(partition)
    parts = list(job.config.build_window_partitioner().partition([from_geojson(entry.geometry)]))
    if not parts:
        raise PermanentError(job.config.where(f"window_partitioner: made no windows for partition {partition}"))
    for part in parts:  # every window asks for the partition's period (None: any time)
        part.time_range = entry.time_range
    root = job.dataset_root(partition)
    count = rslearn_ops.create_windows(root, job.dataset_config(), job.config.group, parts)
    logger.info("windows created", partition=partition, windows=count, seconds=time.monotonic() - started)
    return job.downstream("create_windows", partition)


def prepare(ctx: StepContext) -> list[Downstream]:
    """Match every window with items of the data sources (rslearn dataset prepare)."""
    from rslp.pipeline import rslearn_ops

    job, partition = ctx.job, ctx.partition
    rslearn_ops.prepare(
        job.dataset_root(partition), job.config.group, job.config.hardware, job.manifest.request, partition
    )
    return job.downstream("prepare", partition)


def ingest(ctx: StepContext) -> list[Downstream]:
    """Copy the matched items into the partition's tile store (rslearn dataset ingest)."""
    from rslp.pipeline import rslearn_ops

    job, partition = ctx.job, ctx.partition
    rslearn_ops.ingest(job.dataset_root(partition), job.config.group, job.config.hardware)
    return job.downstream("ingest", partition)


def materialize(ctx: StepContext) -> list[Downstream]:
    """Write each window's input layers (rslearn dataset materialize)."""
    from rslp.pipeline import rslearn_ops

    job, partition = ctx.job, ctx.partition
    rslearn_ops.materialize(job.dataset_root(partition), job.config.group, job.config.hardware)
    return job.downstream("materialize", partition)


def predict(ctx: StepContext) -> list[Downstream]:
    """Run the model on every window of the partition (model loaded once per process)."""
    from rslp.pipeline import predict as predict_module

    job, partition = ctx.job, ctx.partition
    predict_module.predict(job.config, job.dataset_root(partition), job.config.group)
    return job.downstream("predict", partition)


def postprocess(ctx: StepContext) -> list[Downstream]:
    """Merge the partition's window outputs into one file per postprocessor.

    Then arrive at the job's fan-in (:mod:`~rslp.pipeline.fanin`): if this was the last
    partition to finish, ask for combine. Arriving only after the files exist is what
    makes this safe: combine is never asked for on partial inputs, and this task's own
    done marker (which records the combine it asked for, for a redelivery to republish)
    is written only after it returns. A duplicate combine is harmless: same task id,
    idempotent.
    """
    from rslp.pipeline import fanin
    from rslp.pipeline.partition import from_geojson
    from rslp.pipeline.rslearn_ops import covered_windows, open_dataset

    started = time.monotonic()
    job, partition = ctx.job, ctx.partition
    entry = job.partition(partition)
    dataset = open_dataset(job.dataset_root(partition))
    covered, _ = covered_windows(dataset, dataset.load_windows(groups=[job.config.group]))
    footprint = from_geojson(entry.geometry)
    for pp in job.config.build_postprocessors():
        dest = job.partition_output_dir(pp.name) / f"{partition}{pp.suffix}"
        pp.merge_windows(dataset, covered, footprint, dest)
        if not dest.exists():
            raise RuntimeError(f"postprocessor {pp.name} returned but {dest} does not exist")
    logger.info("postprocessed", partition=partition, windows=len(covered), seconds=time.monotonic() - started)
    downstream = job.downstream("postprocess", partition)
    if "combine" in job.manifest.job_steps:
        index = job.partition_index(partition)
        if fanin.arrive(job.root, job.manifest.partition_count, index, job.manifest.fanin_group_size):
            logger.info("last partition finished; asking for combine", partition=partition)
            downstream.append(job.downstream_task("combine", JOB_PARTITION))
    return downstream


def combine(ctx: StepContext) -> list[Downstream]:
    """Merge every partition's file into the job's output, one per postprocessor (PARTITION is ``job``)."""
    job, partition = ctx.job, ctx.partition
    if partition != JOB_PARTITION:
        raise PermanentError(f"combine is a per-job step: --partition must be {JOB_PARTITION!r}, not {partition!r}")
    started = time.monotonic()
    for pp, dest in zip(job.config.build_postprocessors(), job.output_paths(), strict=True):
        sources = (job.partition_output_dir(pp.name) / f"{pid}{pp.suffix}" for pid in job.partition_ids())
        pp.combine(_every_one_present(sources), dest)
        if not dest.exists():
            raise RuntimeError(f"postprocessor {pp.name} combined but {dest} does not exist")
    logger.info("combined", partitions=job.manifest.partition_count, seconds=time.monotonic() - started)
    if "observe" in job.manifest.job_steps:
        return [job.downstream_task("observe", JOB_PARTITION)]
    return []


def _every_one_present(sources: Iterator[UPath]) -> Iterator[UPath]:
    """``sources`` as they are read, failing on the first one missing (the output is then not written)."""
    for source in sources:
        if not source.exists():
            raise RuntimeError(f"combine needs every partition's output; {source} is missing")
        yield source


def observe(ctx: StepContext) -> list[Downstream]:
    """Class distribution of the job's first raster output and its drift from the configured reference.

    Writes ``observe.json`` and ``observe.png`` to ``JOB_ROOT/output``, where ``rslp status``
    looks for them (and shows the drift warning when there is one). If the job is a
    period of a rolling root, then rebuilds the root's catalog.json, which compares the
    period with the previous one (:mod:`~rslp.pipeline.catalog`).
    """
    from rslp.pipeline.catalog import rolling_root_of, write_catalog
    from rslp.pipeline.observe import observe as observe_output

    job, partition = ctx.job, ctx.partition
    if partition != JOB_PARTITION:
        raise PermanentError(f"observe is a per-job step: --partition must be {JOB_PARTITION!r}, not {partition!r}")
    spec = job.config.observe
    rasters = [
        path
        for pp, path in zip(job.config.build_postprocessors(), job.output_paths(), strict=True)
        if pp.suffix == ".tif"
    ]
    if not rasters:
        raise PermanentError(f"{job.config.source}: observe needs a postprocessor that writes a GeoTIFF")
    result = observe_output(
        str(rasters[0]),
        spec.reference if spec else None,
        spec.threshold if spec else None,
        spec.class_names if spec else None,
        out_dir=str(JobRoot(job.root).output_dir),
    )
    if result["warning"]:
        logger.warning("prediction_drift", warning=result["warning"], drift=result["drift"])
    logger.info("observed", output=str(rasters[0]), drift=result["drift"])
    if (rolling_root := rolling_root_of(job.root)) is not None:
        # This period is finished: rebuild the history, which compares it with the previous period.
        catalog = write_catalog(rolling_root)
        entry = next((p for p in catalog["periods"] if p["id"] == job.root.name), None)
        logger.info("catalog updated", period=job.root.name, drift_previous=entry and entry["drift_previous"])
    return []


#: The steps, each the name of its handler in this module (and of its registered workflow).
STEP_NAMES = ("create_windows", "prepare", "ingest", "materialize", "predict", "postprocess", "combine", "observe")


def handler(step: str) -> Callable[[StepContext], list[Downstream]]:
    """``step``'s handler, looked up by name when a task runs (so a wrapper of it, as bench/ puts, is the one run)."""
    if step not in STEP_NAMES:
        raise PermanentError(f"{step[:100]!r} is not a pipeline step ({', '.join(STEP_NAMES)})")
    return globals()[step]  # type: ignore[no-any-return]


def run_task(task: Task, header: JobManifest | None = None) -> list[Downstream]:
    """What a message runs: the step ``task`` names, over its job opened once.

    ``header``: the job's header as the worker's guard read it to admit the task (None: read here).
    """
    if task.job_root is None or task.step != task.workflow:
        raise PermanentError(f"{task.name}: a pipeline task names its job root and its own step")
    return handler(task.workflow)(StepContext(task, Job.load(task.job_root, header)))


def by_hand(step: str, *, job_root: str, partition: str) -> list[Downstream]:
    """Run one step of one partition (``job`` for a per-job step) of the job at JOB_ROOT, as a worker would."""
    job = Job.load(job_root)
    try:
        task = job.task(step, partition)
    except ValidationError:
        raise PermanentError(
            f"--partition {partition[:100]!r} is not a partition id of job {job.manifest.job_id}"
        ) from None
    return handler(step)(StepContext(task, job))
