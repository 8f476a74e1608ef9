"""write_jobs: turn a pipeline config and a request into a job and enqueue its tasks.

It checks every file the steps will read before publishing anything (so a broken
dataset.json or a missing checkpoint fails here, in one line, with nothing enqueued),
resolves each feature's time range (``--start``/``--end`` > the feature's own > the
config's, see :mod:`~rslp.pipeline.timerange`) and checks it against the imagery,
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
from typing import TYPE_CHECKING

from tqdm import tqdm
from upath import UPath

from rslp import log
from rslp.errors import PermanentError
from rslp.ledger import JobManifest, Ledger, PartitionEntry
from rslp.pipeline import timerange
from rslp.pipeline.config import PipelineConfig, load_pipeline_config
from rslp.pipeline.job import JOB_PARTITION, make_task
from rslp.pipeline.timerange import TimeRange
from rslp.queue import Outgoing, open_queue
from rslp.task import Task, task_id_for

if TYPE_CHECKING:
    from rslearn.utils.geometry import STGeometry

logger = log.get(__name__)
#: Messages per publish call; each call waits for its confirmations once.
PUBLISH_CHUNK = 1000


def _absolute(path: str) -> str:
    p = UPath(path)
    return os.path.abspath(p.path) if p.protocol in ("", "file", "local") else str(p)


def plan_partitions(config: PipelineConfig, request: str, flags: TimeRange | None = None) -> list[PartitionEntry]:
    """The request split by the pipeline's partitioner, each clipped to the request, with its time range.

    Features are grouped by the time range they resolve to (``flags`` > their own >
    the config's default, see :mod:`rslp.pipeline.timerange`) and each group is
    partitioned alone, so a partition's windows all ask for one period. Each range is
    checked against the imagery the data sources can list, before anything is written.
    """
    from rslp.pipeline.partition import RequestError, footprint, load_request, to_geojson

    geometries = load_request(request)
    default = config.default_time_range()
    groups: dict[TimeRange | None, list[STGeometry]] = {}
    origins: dict[TimeRange, str] = {}
    for i, geometry in enumerate(geometries):
        own = TimeRange(*geometry.time_range) if geometry.time_range else None
        span = timerange.resolve(flags, own, default)
        groups.setdefault(span, []).append(geometry)
        if span is not None and span not in origins:
            origin = "--start/--end" if flags else f"{request}: feature {i}" if own else config.where("time_range")
            origins[span] = origin
    timerange.check_imagery(config, origins)
    entries: list[PartitionEntry] = []
    for span, members in groups.items():
        try:
            parts = config.build_partitioner().partition(members)
        except ValueError as e:
            raise RequestError(f"{request}: features: {e} ({config.where('partitioner')})") from None
        for fp in (footprint(part, members) for part in parts):
            if fp is not None:
                entries.append(
                    PartitionEntry(
                        id=f"p{len(entries):05d}", geometry=to_geojson(fp), time_range=span.as_tuple() if span else None
                    )
                )
    if not entries:
        raise RequestError(f"{request}: features: the partitioner made no partition that covers the request")
    return entries


def _manifest(config: PipelineConfig, request: str, job_root: str, queue: str, flags: TimeRange | None) -> JobManifest:
    """The job root's manifest: the existing one (same config, request and time range) or a new one."""
    ledger = Ledger(job_root)
    wanted = flags.as_tuple() if flags else None
    if ledger.manifest_path.exists():
        manifest = ledger.read_manifest()
        if (manifest.config, manifest.request) != (str(config.source), request):
            raise PermanentError(
                f"{ledger.manifest_path}: job {manifest.job_id} is for config {manifest.config} and request "
                f"{manifest.request}, not {config.source} and {request}; use another --job_root"
            )
        if manifest.time_range != wanted:
            have = TimeRange(*manifest.time_range) if manifest.time_range else "no --start/--end"
            raise timerange.TimeRangeError(
                f"{ledger.manifest_path}: job {manifest.job_id} is for time range {have}, not "
                f"{flags or 'no --start/--end'}; each period needs its own --job_root"
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
        partitions=plan_partitions(config, request, flags),
        time_range=wanted,
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


def enqueue(
    config: str, request: str, job_root: str, queue: str | None = None, flags: TimeRange | None = None
) -> tuple[JobManifest, list[Task], str]:
    """Check, plan and publish what is missing of a job; returns its manifest, the tasks published, the queue URL."""
    pipeline = load_pipeline_config(config)
    pipeline.check()
    job_root = _absolute(job_root)
    queue_url = queue or f"local://{job_root}/queue.db"
    manifest = _manifest(pipeline, _absolute(request), job_root, queue_url, flags)
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
    logger.info("published", job_id=manifest.job_id, tasks=len(tasks), partitions=len(manifest.partitions))
    return manifest, tasks, queue_url


def write_jobs(
    config: str,
    request: str,
    job_root: str,
    queue: str | None = None,
    start: str | None = None,
    end: str | None = None,
) -> None:
    """Split REQUEST (GeoJSON) with the pipeline CONFIG into tasks under JOB_ROOT and enqueue them.

    Checks every file the pipeline names first, so bad input fails before anything is
    published. Writes JOB_ROOT/manifest.json, skips partitions that are already done,
    publishes the next step of the others, and prints the job id and how to watch it.
    Rerunning it for the same job root publishes only what is missing.

    Args:
        config: the pipeline.yaml.
        request: the request GeoJSON (WGS84).
        job_root: where the job's manifest, markers, datasets and outputs go (local or gs://).
        queue: pubsub://PROJECT_ID or local://PATH.db (default: local://JOB_ROOT/queue.db).
        start: start of the imagery period (ISO 8601, inclusive); overrides the features'
            properties.start_time and pipeline.yaml's time_range. Needs --end.
        end: end of the imagery period (ISO 8601, exclusive).

    The job id is printed and recorded in JOB_ROOT/manifest.json. Nothing is returned,
    so the registered ``pipeline/write_jobs`` workflow can also run as a queued task.
    """
    manifest, tasks, queue_url = enqueue(config, request, job_root, queue, timerange.from_flags(start, end))
    skipped = len(manifest.partitions) - sum(1 for t in tasks if t.partition != JOB_PARTITION)
    subs = ",".join(subscriptions(manifest.steps + manifest.job_steps, manifest.topics))
    print(
        f"job {manifest.job_id}: {len(manifest.partitions)} partitions, {len(tasks)} tasks published "
        f"({skipped} partitions already done) on {queue_url}\n"
        f"  watch it: rslp status --job_root {manifest.job_root} --watch\n"
        f"  run workers: rslp worker --queue {queue_url} --subscription {subs}"
    )


def subscriptions(steps: list[str], topics: dict[str, str]) -> list[str]:
    """The subscriptions of ``steps``, later steps first, so workers finish partitions before starting new ones."""
    return list(dict.fromkeys(topics[s] for s in reversed(steps)))
