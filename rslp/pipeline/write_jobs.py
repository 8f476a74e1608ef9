"""write_jobs: turn a pipeline config and a request into a job and enqueue its tasks.

It checks every file the steps will read before publishing anything (so a broken
dataset.json or a missing checkpoint fails here, in one line, with nothing enqueued),
splits the request into partitions, writes the job manifest, and publishes for each
partition the first step that is not done yet. Rerunning it on the same job root is
safe and cheap: the manifest is kept, a finished job publishes nothing, a half-finished
one only its unfinished partitions (and combine, if only that is missing). Done-ness is
read from the markers with one listing per step, never one read per task.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections import defaultdict

from tqdm import tqdm
from upath import UPath

from rslp import log
from rslp.errors import PermanentError
from rslp.ledger import JobManifest, Ledger, PartitionEntry
from rslp.pipeline.config import PipelineConfig, load_pipeline_config
from rslp.pipeline.job import JOB_PARTITION, make_task
from rslp.queue import Outgoing, open_queue
from rslp.queue.local import default_queue_url
from rslp.task import Task, task_id_for

logger = log.get(__name__)
#: Messages per publish call; each call waits for its confirmations once.
PUBLISH_CHUNK = 1000


def _absolute(path: str) -> str:
    p = UPath(path)
    return os.path.abspath(p.path) if p.protocol in ("", "file", "local") else str(p)


def plan_partitions(config: PipelineConfig, request: str) -> list[PartitionEntry]:
    """The request split by the pipeline's partitioner, each clipped to the request."""
    from rslp.pipeline.partition import RequestError, footprint, load_request, to_geojson

    geometries = load_request(request)
    try:
        parts = config.build_partitioner().partition(geometries)
    except ValueError as e:
        raise RequestError(f"{request}: features: {e} ({config.where('partitioner')})") from None
    footprints = [fp for fp in (footprint(part, geometries) for part in parts) if fp is not None]
    if not footprints:
        raise RequestError(f"{request}: features: the partitioner made no partition that covers the request")
    return [PartitionEntry(id=f"p{i:05d}", geometry=to_geojson(fp)) for i, fp in enumerate(footprints)]


def _manifest(config: PipelineConfig, request: str, job_root: str, queue: str) -> JobManifest:
    """The job root's manifest: the existing one (same config and request) or a new one."""
    ledger = Ledger(job_root)
    if ledger.manifest_path.exists():
        manifest = ledger.read_manifest()
        if (manifest.config, manifest.request) != (str(config.source), request):
            raise PermanentError(
                f"{ledger.manifest_path}: job {manifest.job_id} is for config {manifest.config} and request "
                f"{manifest.request}, not {config.source} and {request}; use another --job_root"
            )
        return manifest
    manifest = JobManifest(
        job_id=f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}",
        job_root=job_root,
        config=str(config.source),
        request=request,
        queue=queue,
        steps=config.partition_steps,
        job_steps=config.job_steps,
        topics=config.topics,
        partitions=plan_partitions(config, request),
    )
    ledger.write_manifest(manifest)
    return manifest


def pending_tasks(manifest: JobManifest) -> list[Task]:
    """For each partition, its first step without a done marker; then combine if only it is left."""
    ledger = Ledger(manifest.job_root)
    done = {
        step: {tid for tid, state in ledger.states(step).items() if state == "done"}
        for step in manifest.steps + manifest.job_steps
    }
    tasks = []
    for entry in manifest.partitions:
        for step in manifest.steps:
            if task_id_for(manifest.job_id, entry.id, step) not in done[step]:
                tasks.append(make_task(manifest.job_id, manifest.job_root, step, entry.id))
                break
    for step in manifest.job_steps:
        if not tasks and task_id_for(manifest.job_id, JOB_PARTITION, step) not in done[step]:
            tasks.append(make_task(manifest.job_id, manifest.job_root, step, JOB_PARTITION))
    return tasks


def write_jobs(config: str, request: str, job_root: str, queue: str | None = None) -> None:
    """Split REQUEST (GeoJSON) with the pipeline CONFIG into tasks under JOB_ROOT and enqueue them.

    Checks every file the pipeline names first, so bad input fails before anything is
    published. Writes JOB_ROOT/manifest.json, skips partitions that are already done,
    publishes the next step of the others, and prints the job id and how to watch it.
    Rerunning it for the same job root publishes only what is missing.

    Args:
        config: the pipeline.yaml.
        request: the request GeoJSON (WGS84).
        job_root: where the job's manifest, markers, datasets and outputs go (local or gs://).
        queue: pubsub://PROJECT_ID or local://PATH.db (default: local://JOB_ROOT/queue.db, or
            on local disk for a gs:// job root).

    The job id is printed and recorded in JOB_ROOT/manifest.json. Nothing is returned,
    so the registered ``pipeline/write_jobs`` workflow can also run as a queued task.
    """
    pipeline = load_pipeline_config(config)
    pipeline.check()
    job_root = _absolute(job_root)
    queue_url = queue or default_queue_url(job_root)
    manifest = _manifest(pipeline, _absolute(request), job_root, queue_url)
    tasks = pending_tasks(manifest)
    by_topic: dict[str, list[Task]] = defaultdict(list)
    for task in tasks:
        by_topic[manifest.topics[task.step or ""]].append(task)
    with open_queue(queue_url) as q:
        for topic in sorted(set(manifest.topics.values())):
            q.setup(topic, topic)
        with tqdm(total=len(tasks), desc="publishing", unit="task", file=sys.stderr) as bar:
            for topic, batch in by_topic.items():
                for i in range(0, len(batch), PUBLISH_CHUNK):
                    chunk = batch[i : i + PUBLISH_CHUNK]
                    q.publish(topic, [Outgoing(t.encode()) for t in chunk])
                    bar.update(len(chunk))
    skipped = len(manifest.partitions) - sum(1 for t in tasks if t.partition != JOB_PARTITION)
    logger.info("published", job_id=manifest.job_id, tasks=len(tasks), partitions=len(manifest.partitions))
    subs = ",".join(subscriptions(manifest.steps + manifest.job_steps, manifest.topics))
    print(
        f"job {manifest.job_id}: {len(manifest.partitions)} partitions, {len(tasks)} tasks published "
        f"({skipped} partitions already done) on {queue_url}\n"
        f"  watch it: rslp status --job_root {job_root} --watch\n"
        f"  run workers: rslp worker --queue {queue_url} --subscription {subs}"
    )


def subscriptions(steps: list[str], topics: dict[str, str]) -> list[str]:
    """The subscriptions of ``steps``, later steps first, so workers finish partitions before starting new ones."""
    return list(dict.fromkeys(topics[s] for s in reversed(steps)))
