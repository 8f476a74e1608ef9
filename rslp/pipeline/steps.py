"""The ``pipeline`` project's workflows: one function per step, each a thin layer.

A step loads its job (the small header + pipeline config; its partition's record only
when it needs the footprint), runs its rslearn operation on its
partition (:mod:`~rslp.pipeline.rslearn_ops`, :mod:`~rslp.pipeline.predict`,
:mod:`~rslp.pipeline.postprocess`), which checks what was written, and returns the
downstream task: the partition's next step, and after the last partition's postprocess,
combine. The worker then writes the done marker and publishes the downstream tasks;
a step never writes markers itself.

Parameters are keyword-only: tasks carry ``--job_root`` / ``--partition`` flags, and
the registry's parser would make required positional-or-keyword parameters positional.

Every step is idempotent: a rerun after a crash skips what is done and gives the same
output. Bad input raises :class:`~rslp.errors.PermanentError` (one line naming the file
and field); anything else is retried by the worker.

This module imports neither torch nor rslearn at import time: the registry imports it
to parse a task's args, and a worker that never predicts must start fast.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from upath import UPath

from rslp import log
from rslp.errors import PermanentError
from rslp.pipeline.job import JOB_PARTITION, Job
from rslp.task import Downstream

logger = log.get(__name__)


def create_windows(*, job_root: str, partition: str) -> list[Downstream]:
    """Split the partition's footprint into rslearn windows (the pipeline's window_partitioner), with its time range."""
    from rslp.pipeline import rslearn_ops
    from rslp.pipeline.partition import from_geojson

    started = time.monotonic()
    job = Job.load(job_root)
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


def prepare(*, job_root: str, partition: str) -> list[Downstream]:
    """Match every window with items of the data sources (rslearn dataset prepare)."""
    from rslp.pipeline import rslearn_ops

    job = Job.load(job_root)
    rslearn_ops.prepare(
        job.dataset_root(partition), job.config.group, job.config.hardware, job.manifest.request, partition
    )
    return job.downstream("prepare", partition)


def ingest(*, job_root: str, partition: str) -> list[Downstream]:
    """Copy the matched items into the partition's tile store (rslearn dataset ingest)."""
    from rslp.pipeline import rslearn_ops

    job = Job.load(job_root)
    rslearn_ops.ingest(job.dataset_root(partition), job.config.group, job.config.hardware)
    return job.downstream("ingest", partition)


def materialize(*, job_root: str, partition: str) -> list[Downstream]:
    """Write each window's input layers (rslearn dataset materialize)."""
    from rslp.pipeline import rslearn_ops

    job = Job.load(job_root)
    rslearn_ops.materialize(job.dataset_root(partition), job.config.group, job.config.hardware)
    return job.downstream("materialize", partition)


def predict(*, job_root: str, partition: str) -> list[Downstream]:
    """Run the model on every window of the partition (model loaded once per process)."""
    from rslp.pipeline import predict as predict_module

    job = Job.load(job_root)
    predict_module.predict(job.config, job.dataset_root(partition), job.config.group)
    return job.downstream("predict", partition)


def postprocess(*, job_root: str, partition: str) -> list[Downstream]:
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
    job = Job.load(job_root)
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
    if "combine" in job.config.job_steps:
        index = job.partition_index(partition)
        if fanin.arrive(job.root, job.manifest.partition_count, index, job.manifest.fanin_group_size):
            logger.info("last partition finished; asking for combine", partition=partition)
            downstream.append(Downstream(topic=job.config.topics["combine"], task=job.task("combine", JOB_PARTITION)))
    return downstream


def combine(*, job_root: str, partition: str) -> list[Downstream]:
    """Merge every partition's file into the job's output, one per postprocessor (PARTITION is ``job``)."""
    if partition != JOB_PARTITION:
        raise PermanentError(f"combine is a per-job step: --partition must be {JOB_PARTITION!r}, not {partition!r}")
    started = time.monotonic()
    job = Job.load(job_root)
    for pp, dest in zip(job.config.build_postprocessors(), job.output_paths(), strict=True):
        sources = (job.partition_output_dir(pp.name) / f"{pid}{pp.suffix}" for pid in job.partition_ids())
        pp.combine(_every_one_present(sources), dest)
        if not dest.exists():
            raise RuntimeError(f"postprocessor {pp.name} combined but {dest} does not exist")
    logger.info("combined", partitions=job.manifest.partition_count, seconds=time.monotonic() - started)
    if "observe" in job.config.job_steps:
        return [Downstream(topic=job.config.topics["observe"], task=job.task("observe", JOB_PARTITION))]
    return []


def _every_one_present(sources: Iterator[UPath]) -> Iterator[UPath]:
    """``sources`` as they are read, failing on the first one missing (the output is then not written)."""
    for source in sources:
        if not source.exists():
            raise RuntimeError(f"combine needs every partition's output; {source} is missing")
        yield source


def observe(*, job_root: str, partition: str) -> list[Downstream]:
    """Class distribution of the job's first raster output and its drift from the configured reference.

    Writes ``observe.json`` and ``observe.png`` to ``JOB_ROOT/output``, where ``rslp status``
    looks for them (and shows the drift warning when there is one). If the job is a
    period of a rolling root, then rebuilds the root's catalog.json, which compares the
    period with the previous one (:mod:`~rslp.pipeline.catalog`).
    """
    from rslp.pipeline.catalog import rolling_root_of, write_catalog
    from rslp.pipeline.observe import observe as observe_output

    if partition != JOB_PARTITION:
        raise PermanentError(f"observe is a per-job step: --partition must be {JOB_PARTITION!r}, not {partition!r}")
    job = Job.load(job_root)
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
        out_dir=str(job.root / "output"),
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
