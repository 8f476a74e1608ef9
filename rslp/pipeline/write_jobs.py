"""write_jobs: turn a pipeline config and a request into a job and enqueue its tasks.

It checks every file the steps will read, the request, the job root and the queue
before writing anything (:mod:`rslp.pipeline.preflight`: a broken dataset.json, a
missing checkpoint or an unwritable queue fails here, in one line, with nothing written),
resolves each feature's time range (``--start``/``--end`` > the feature's own > the
config's, see :mod:`~rslp.pipeline.timerange`) and checks it against the imagery,
splits the request into partitions (streamed: a continent's 100k partitions are never
all in memory), writes the job's partition records and header, and publishes for each
partition the first step that is not done yet. Rerunning it on the same job root is
safe and cheap: the manifest is kept, a finished job publishes nothing, a half-finished
one only its unfinished partitions (and combine, if only that is missing). Done-ness is
read from the markers with one listing per step, never one read per task.
"""

from __future__ import annotations

import itertools
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from tqdm import tqdm
from upath import UPath

from rslp import hints, log
from rslp.errors import Interrupted, PermanentError
from rslp.jobroot import JobManifest, JobRoot, partition_index
from rslp.pipeline import timerange
from rslp.pipeline.config import PipelineConfig, load_pipeline_config, subscriptions
from rslp.pipeline.job import JOB_PARTITION, make_task
from rslp.pipeline.preflight import preflight
from rslp.pipeline.publish_log import PublishLog
from rslp.pipeline.timerange import TimeRange
from rslp.queue import Queue, open_queue
from rslp.queue.base import encode_task
from rslp.queue.placement import default_queue_url
from rslp.storage import absolute
from rslp.task import Task, task_id_for

if TYPE_CHECKING:
    from rslearn.utils.geometry import STGeometry

logger = log.get(__name__)
#: Said when write-jobs picks the queue: the job root may be on a network mount, the queue is not.
LOCAL_DISK_NOTE = "  the queue file is on this machine's local disk (SQLite is unsafe on network mounts)\n"
#: Messages per publish call; each call waits for its confirmations once.
PUBLISH_CHUNK = 1000
#: Partitions reprojected to WGS84 together while planning.
PLAN_BATCH = 1000


def plan_partitions(
    config: PipelineConfig,
    request: str,
    spool: IO[str],
    max_partitions: int | None = None,
    flags: TimeRange | None = None,
) -> int:
    """Split the request with the pipeline's partitioner into ``spool``: one partition record a line.

    Features are grouped by the time range they resolve to (``flags`` > their own >
    the config's default, see :mod:`rslp.pipeline.timerange`) and each group is
    partitioned alone, so a partition's windows all ask for one period; each range is
    checked against the imagery the data sources can list, before anything is written.
    Each part is clipped to the request and written at once, so memory does not grow
    with the plan. Returns how many partitions were planned; above ``max_partitions``
    (default: the config's) it only counts on, then raises naming the count and the knob.
    """
    from rslp.pipeline.partition import Clip, RequestError, load_request

    ceiling = config.max_partitions if max_partitions is None else max_partitions
    geometries = load_request(request)
    default = config.default_time_range()
    groups: dict[TimeRange | None, list[STGeometry]] = {}
    origins: dict[TimeRange, str] = {}
    for i, geometry in enumerate(geometries):
        own = TimeRange(*geometry.time_range) if geometry.time_range else None
        span = timerange.resolve(flags, own, default)
        groups.setdefault(span, []).append(geometry)
        if span is not None and span not in origins:
            origins[span] = (
                "--start/--end" if flags else f"{request}: feature {i}" if own else config.where("time_range")
            )
    if origins:  # the data sources are listed only when some range asks for a time
        dataset = config.load_dataset_config(resolve_env=True)
        timerange.check_imagery(dataset, str(config.resolve(config.dataset_config)), origins)
    count = 0
    for span, members in groups.items():
        suffix = "}" if span is None else f',"time_range":{json.dumps([t.isoformat() for t in span.as_tuple()])}}}'
        clip = Clip(members)
        batch: list[STGeometry] = []
        try:
            for part in config.build_partitioner().partition(members):
                if count >= ceiling:  # over the ceiling: count the rest, clip nothing
                    count += 1
                    continue
                if (fp := clip(part)) is not None:
                    batch.append(fp)
                    count += 1
                if len(batch) == PLAN_BATCH:
                    _spool(spool, batch, suffix)
        except ValueError as e:
            raise RequestError(f"{request}: features: {e} ({config.where('partitioner')})") from None
        _spool(spool, batch, suffix)
    if count > ceiling:
        raise PermanentError(
            f"{request}: the plan has {count} partitions, over max_partitions={ceiling} "
            f"({config.where('max_partitions')}, or --max_partitions); is the partitioner's cell_size right?"
        )
    if not count:
        raise RequestError(f"{request}: features: the partitioner made no partition that covers the request")
    return count


def _spool(spool: IO[str], batch: list[STGeometry], suffix: str) -> None:
    """Append ``batch``'s partition records to ``spool`` (one JSON line each; ``suffix`` closes it) and empty it."""
    from rslp.pipeline.partition import to_geojson_texts

    spool.writelines('{"geometry":' + text + suffix + "\n" for text in to_geojson_texts(batch))
    batch.clear()


def _records(spool: IO[str]) -> Iterator[dict[str, Any]]:
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
    flags: TimeRange | None = None,
) -> JobManifest:
    """Plan a new job into JOB_ROOT: its partition records, then its header.

    The plan goes to a local spool file first, so a plan over the ceiling fails before
    anything is written to the job root, and memory does not grow with the plan.
    """
    with tempfile.TemporaryFile("w+") as spool:
        planned = plan_partitions(config, request, spool, max_partitions, flags)
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
            time_range=flags.as_tuple() if flags else None,
        )
        return JobRoot(job_root).write_job(header, _records(spool))


def _manifest(
    config: PipelineConfig,
    request: str,
    job_root: str,
    queue: str,
    max_partitions: int | None = None,
    flags: TimeRange | None = None,
) -> JobManifest:
    """The job root's header: the existing one (same config, request and time range), or a new job's.

    A job root without a header (write-jobs was interrupted while writing records) is
    planned again from scratch.
    """
    ledger = JobRoot(job_root)
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
    return create_job(config, request, job_root, queue, max_partitions, flags=flags)


def pending_tasks(manifest: JobManifest) -> Iterator[Task]:
    """For each partition, its first step without a done marker; then combine if only it is left.

    A generator over the partition ids (nothing is read but one listing per step), so
    a continent's tasks are never all in memory.
    """
    ledger = JobRoot(manifest.job_root)
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
    ledger = JobRoot(job_root)
    return ledger.read_manifest().queue if ledger.manifest_path.exists() else None


def enqueue(
    config: str,
    request: str,
    job_root: str,
    queue: str | None = None,
    flags: TimeRange | None = None,
    max_partitions: int | None = None,
    republish: bool = False,
) -> tuple[JobManifest, int, int, str]:
    """Check, plan and publish what is missing of a job.

    What an earlier run on the same queue published is not published again
    (:mod:`~rslp.pipeline.publish_log`) unless ``republish``. Returns its header, the
    tasks published, how many partitions are not done, and the queue URL.
    """
    try:
        return _enqueue(config, request, job_root, queue, flags, max_partitions, republish)
    except KeyboardInterrupt:
        raise Interrupted(_interrupted(job_root)) from None


def _interrupted(job_root: str) -> str:
    """What a Ctrl-C left of the job, in one line, and that rerunning the same command finishes it."""
    ledger = JobRoot(absolute(job_root))
    if not ledger.manifest_path.exists():
        return (
            "interrupted before the job's header was written (records written so far are planned again); "
            "rerun the same command to write and publish the job"
        )
    return (
        f"interrupted after writing job {ledger.read_manifest().job_id}, while publishing its tasks; rerun the "
        "same command to publish what is missing (what the queue confirmed is not sent again)"
    )


def _enqueue(
    config: str,
    request: str,
    job_root: str,
    queue: str | None,
    flags: TimeRange | None,
    max_partitions: int | None,
    republish: bool,
) -> tuple[JobManifest, int, int, str]:
    pipeline = load_pipeline_config(config)
    job_root = absolute(job_root)
    queue_url = queue or _recorded_queue(job_root) or default_queue_url(job_root)
    preflight(pipeline, absolute(request), job_root, queue_url)  # nothing is written before this passes
    manifest = _manifest(pipeline, absolute(request), job_root, queue_url, max_partitions, flags)
    if manifest.queue != queue_url:  # a re-run on another queue: status and dlq must look there now
        manifest = manifest.model_copy(update={"queue": queue_url})
        JobRoot(job_root).write_manifest(manifest)
    log = PublishLog(UPath(job_root), queue_url, manifest.partition_count)
    already = set() if republish else log.published()
    published, first_steps = 0, 0
    with open_queue(queue_url, create=True) as q:
        for topic in sorted(set(manifest.topics.values())):
            q.setup(topic, topic)
        with tqdm(desc="publishing", unit="task", file=sys.stderr) as bar:
            for span, tasks in itertools.groupby(pending_tasks(manifest), key=lambda t: _span(log, t)):
                by_topic: dict[str, list[Task]] = {}
                for task in tasks:
                    first_steps += task.partition != JOB_PARTITION
                    if span not in already:
                        by_topic.setdefault(manifest.topics[task.step or ""], []).append(task)
                for topic, span_tasks in by_topic.items():
                    for start in range(0, len(span_tasks), PUBLISH_CHUNK):
                        published += _publish(q, topic, span_tasks[start : start + PUBLISH_CHUNK], bar)
                if span is not None and span not in already:
                    log.mark(span)
    logger.info("published", job_id=manifest.job_id, tasks=published, partitions=manifest.partition_count)
    return manifest, published, first_steps, queue_url


def write_jobs(
    config: str,
    request: str,
    job_root: str,
    queue: str | None = None,
    max_partitions: int | None = None,
    start: str | None = None,
    end: str | None = None,
    republish: bool = False,
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
        start: start of the imagery period (ISO 8601, inclusive); overrides the features'
            properties.start_time and pipeline.yaml's time_range. Needs --end.
        end: end of the imagery period (ISO 8601, exclusive).
        republish: publish every unfinished partition's task again, even those an earlier run
            already published to this queue (only for a queue that lost messages: each
            duplicate may run its task twice).

    The job id is printed and recorded in JOB_ROOT/manifest.json. Nothing is returned,
    so the registered ``pipeline/write_jobs`` workflow can also run as a queued task.
    """
    flags = timerange.from_flags(start, end)
    manifest, published, first_steps, queue_url = enqueue(
        config, request, job_root, queue, flags, max_partitions, republish
    )
    subs = subscriptions(manifest.steps + manifest.job_steps, manifest.topics)
    print(
        summary(manifest, published, first_steps, queue_url)
        + f"\n  run workers: {hints.worker(queue_url, subs, manifest.job_root)}"
    )


def summary(manifest: JobManifest, published: int, first_steps: int, queue_url: str) -> str:
    """What was published, where, and the command that watches the job (each runs as printed)."""
    skipped = manifest.partition_count - first_steps
    earlier = first_steps - min(published, first_steps)
    return (
        f"job {manifest.job_id}: {manifest.partition_count} partitions, {published} tasks published "
        f"({skipped} partitions already done"
        f"{f', {earlier} already published by an earlier run' if earlier else ''}) on {queue_url}\n"
        f"{LOCAL_DISK_NOTE if queue_url == default_queue_url(manifest.job_root) else ''}"
        f"  watch it: {hints.status(manifest.job_root, '--watch')}"
    )


def _publish(q: Queue, topic: str, chunk: list[Task], bar: tqdm[Any]) -> int:
    """Publish ``chunk`` and wait for the queue to confirm it; returns how many were published."""
    q.publish(topic, [encode_task(t) for t in chunk])
    bar.update(len(chunk))
    return len(chunk)


def _span(log: PublishLog, task: Task) -> int | None:
    """The publish-log span of a partition's task; None for a per-job task (never skipped)."""
    if task.partition == JOB_PARTITION or task.partition is None:
        return None
    return log.span_of(partition_index(task.partition))
