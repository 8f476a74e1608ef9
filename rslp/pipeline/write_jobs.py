"""write_jobs: turn a pipeline config and a request into a job and enqueue its tasks.

It checks every file the steps will read, the request, the job root and the queue
before writing anything (:mod:`rslp.pipeline.preflight`: a broken dataset.json, a
missing checkpoint or an unwritable queue fails here, in one line, with nothing written),
splits the request into partitions (streamed: a continent's 100k partitions are never
all in memory), writes the job's partition records and header, and publishes for each
partition the first step that is not done yet. Rerunning it on the same job root is
safe and cheap: the manifest is kept, a finished job publishes nothing, a half-finished
one only its unfinished partitions (and combine, if only that is missing). Done-ness is
read from the markers with one listing per step, never one read per task.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import IO, Any

from tqdm import tqdm
from upath import UPath

from rslp import log
from rslp.errors import PermanentError
from rslp.ledger import JobManifest, Ledger
from rslp.pipeline.config import PipelineConfig, load_pipeline_config
from rslp.pipeline.job import JOB_PARTITION, make_task
from rslp.pipeline.preflight import preflight
from rslp.queue import Queue, open_queue
from rslp.queue.limits import encode_task
from rslp.queue.placement import default_queue_url
from rslp.task import Task, task_id_for

logger = log.get(__name__)
#: Said when write-jobs picks the queue: the job root may be on a network mount, the queue is not.
LOCAL_DISK_NOTE = "  the queue file is on this machine's local disk (SQLite is unsafe on network mounts)\n"
#: Messages per publish call; each call waits for its confirmations once.
PUBLISH_CHUNK = 1000
#: Partitions reprojected to WGS84 together while planning.
PLAN_BATCH = 1000


def _absolute(path: str) -> str:
    p = UPath(path)
    return os.path.abspath(p.path) if p.protocol in ("", "file", "local") else str(p)


def plan_partitions(config: PipelineConfig, request: str, spool: IO[str], max_partitions: int | None = None) -> int:
    """Split the request with the pipeline's partitioner into ``spool``: one GeoJSON footprint a line.

    Each part is clipped to the request and written at once, so memory does not grow
    with the plan. Returns how many partitions were planned; above ``max_partitions``
    (default: the config's) it only counts on, then raises naming the count and the knob.
    """
    from rslp.pipeline.partition import Clip, RequestError, load_request, to_geojson_texts

    ceiling = config.max_partitions if max_partitions is None else max_partitions
    geometries = load_request(request)
    clip = Clip(geometries)
    count, batch = 0, []
    try:
        for part in config.build_partitioner().partition(geometries):
            if count >= ceiling:  # over the ceiling: count the rest, clip nothing
                count += 1
                continue
            if (fp := clip(part)) is not None:
                batch.append(fp)
                count += 1
            if len(batch) == PLAN_BATCH:
                spool.writelines(text + "\n" for text in to_geojson_texts(batch))
                batch = []
    except ValueError as e:
        raise RequestError(f"{request}: features: {e} ({config.where('partitioner')})") from None
    spool.writelines(text + "\n" for text in to_geojson_texts(batch))
    if count > ceiling:
        raise PermanentError(
            f"{request}: the plan has {count} partitions, over max_partitions={ceiling} "
            f"({config.where('max_partitions')}, or --max_partitions); is the partitioner's cell_size right?"
        )
    if not count:
        raise RequestError(f"{request}: features: the partitioner made no partition that covers the request")
    return count


def _geometries(spool: IO[str]) -> Iterator[dict[str, Any]]:
    spool.seek(0)
    for line in spool:
        yield json.loads(line)


def create_job(
    config: PipelineConfig,
    request: str,
    job_root: str,
    queue: str | None,
    max_partitions: int | None = None,
    job_id: str | None = None,
) -> JobManifest:
    """Plan a new job into JOB_ROOT: its partition records, then its header.

    The plan goes to a local spool file first, so a plan over the ceiling fails before
    anything is written to the job root, and memory does not grow with the plan.
    """
    with tempfile.TemporaryFile("w+") as spool:
        planned = plan_partitions(config, request, spool, max_partitions)
        logger.info("planned", partitions=planned)
        header = JobManifest(
            job_id=job_id or f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}",
            job_root=job_root,
            config=str(config.source),
            request=request,
            queue=queue,
            steps=config.partition_steps,
            job_steps=config.job_steps,
            topics=config.topics,
        )
        return Ledger(job_root).write_job(header, _geometries(spool))


def _manifest(
    config: PipelineConfig, request: str, job_root: str, queue: str, max_partitions: int | None = None
) -> JobManifest:
    """The job root's header: the existing one (same config and request), or a new job's.

    A job root without a header (write-jobs was interrupted while writing records) is
    planned again from scratch.
    """
    ledger = Ledger(job_root)
    if ledger.manifest_path.exists():
        manifest = ledger.read_manifest()
        if (manifest.config, manifest.request) != (str(config.source), request):
            raise PermanentError(
                f"{ledger.manifest_path}: job {manifest.job_id} is for config {manifest.config} and request "
                f"{manifest.request}, not {config.source} and {request}; use another --job_root"
            )
        return manifest
    return create_job(config, request, job_root, queue, max_partitions)


def pending_tasks(manifest: JobManifest) -> Iterator[Task]:
    """For each partition, its first step without a done marker; then combine if only it is left.

    A generator over the partition ids (nothing is read but one listing per step), so
    a continent's tasks are never all in memory.
    """
    ledger = Ledger(manifest.job_root)
    done = {
        step: {tid for tid, state in ledger.states(step).items() if state == "done"}
        for step in manifest.steps + manifest.job_steps
    }
    any_partition_left = False
    for pid in manifest.partition_ids():
        for step in manifest.steps:
            if task_id_for(manifest.job_id, pid, step) not in done[step]:
                any_partition_left = True
                yield make_task(manifest.job_id, manifest.job_root, step, pid)
                break
    for step in manifest.job_steps:
        if any_partition_left:
            break
        if task_id_for(manifest.job_id, JOB_PARTITION, step) not in done[step]:
            yield make_task(manifest.job_id, manifest.job_root, step, JOB_PARTITION)
            break


def _recorded_queue(job_root: str) -> str | None:
    """The queue a rerun keeps using: the one the job's manifest names, if it has one."""
    ledger = Ledger(job_root)
    return ledger.read_manifest().queue if ledger.manifest_path.exists() else None


def write_jobs(
    config: str, request: str, job_root: str, queue: str | None = None, max_partitions: int | None = None
) -> None:
    """Split REQUEST (GeoJSON) with the pipeline CONFIG into tasks under JOB_ROOT and enqueue them.

    Checks every file the pipeline names first, so bad input fails before anything is
    published. Writes JOB_ROOT/manifest.json (the header) and records/ (the partitions),
    skips partitions that are already done, publishes the next step of the others, and
    prints the job id and how to watch it. Rerunning it for the same job root publishes
    only what is missing (also after it was killed while publishing).

    Args:
        config: the pipeline.yaml.
        request: the request GeoJSON (WGS84).
        job_root: where the job's manifest, markers, datasets and outputs go (local or gs://).
        queue: pubsub://PROJECT_ID or local://PATH.db (default: the queue the job already uses,
            else a file on this machine's disk under ~/.cache/rslp/queues, named after the job
            root: SQLite is unsafe on network mounts).
        max_partitions: refuse a plan with more partitions than this (default: the config's max_partitions).

    The job id is printed and recorded in JOB_ROOT/manifest.json. Nothing is returned,
    so the registered ``pipeline/write_jobs`` workflow can also run as a queued task.
    """
    pipeline = load_pipeline_config(config)
    job_root = _absolute(job_root)
    queue_url = queue or _recorded_queue(job_root) or default_queue_url(job_root)
    preflight(pipeline, _absolute(request), job_root, queue_url)  # nothing is written before this passes
    manifest = _manifest(pipeline, _absolute(request), job_root, queue_url, max_partitions)
    if manifest.queue != queue_url:  # a re-run on another queue: status and dlq must look there now
        manifest = manifest.model_copy(update={"queue": queue_url})
        Ledger(job_root).write_manifest(manifest)
    published, first_steps = 0, 0
    with open_queue(queue_url, create=True) as q:
        for topic in sorted(set(manifest.topics.values())):
            q.setup(topic, topic)
        chunks: dict[str, list[Task]] = {}
        with tqdm(desc="publishing", unit="task", file=sys.stderr) as bar:
            for task in pending_tasks(manifest):
                first_steps += task.partition != JOB_PARTITION
                chunk = chunks.setdefault(manifest.topics[task.step or ""], [])
                chunk.append(task)
                if len(chunk) == PUBLISH_CHUNK:
                    published += _publish(q, manifest.topics[task.step or ""], chunk, bar)
            for topic, chunk in chunks.items():
                published += _publish(q, topic, chunk, bar)
    skipped = manifest.partition_count - first_steps
    logger.info("published", job_id=manifest.job_id, tasks=published, partitions=manifest.partition_count)
    subs = ",".join(subscriptions(manifest.steps + manifest.job_steps, manifest.topics))
    print(
        f"job {manifest.job_id}: {manifest.partition_count} partitions, {published} tasks published "
        f"({skipped} partitions already done) on {queue_url}\n"
        f"{LOCAL_DISK_NOTE if queue_url == default_queue_url(job_root) else ''}"
        f"  watch it: rslp status --job_root {job_root} --watch\n"
        f"  run workers: rslp worker --queue {queue_url} --subscription {subs}"
    )


def _publish(q: Queue, topic: str, chunk: list[Task], bar: tqdm[Any]) -> int:
    """Publish ``chunk`` (and empty it); returns how many were published."""
    if not chunk:
        return 0
    q.publish(topic, [encode_task(t) for t in chunk])
    n = len(chunk)
    bar.update(n)
    chunk.clear()
    return n


def subscriptions(steps: list[str], topics: dict[str, str]) -> list[str]:
    """The subscriptions of ``steps``, later steps first, so workers finish partitions before starting new ones."""
    return list(dict.fromkeys(topics[s] for s in reversed(steps)))
