"""``rslp rolling``: one job per period (day, week or month) under a rolling root, for cron or CI.

Each period is an ordinary job in ``ROOT/<period>/`` (``2026-01-15``, ``2026-W03`` or
``2026-01``) written by write_jobs with the period as ``--start``/``--end``, so
``rslp status --job_root ROOT/<period>`` works on it and its task ids, markers and
outputs are its own. A run enqueues only what is missing: a finished period publishes
nothing, a half-finished one only its unfinished tasks (write_jobs' own rerun rule), a
new one all of its first steps. A period still moving (a marker written within
``--requeue_after`` seconds, or enqueued that recently) is left to its workers, so
its queued tasks are not published twice; one that stopped moving before finishing
(its messages were lost) gets its missing tasks again. So a schedule can call it as
often as it likes: run twice in a row, the second run publishes 0 tasks.

Only periods that have ended by ``--until`` (default: now) are run: a period is
processed once, when its imagery is complete, and its output is never rewritten. A
period whose time range no data-source item falls in (known before publishing for
local files) is skipped and reported, and tried again by the next run, since imagery
can arrive late. Anything else that goes wrong raises, so the command exits non-zero
and the schedule reports it.

Every run ends by rebuilding ``ROOT/catalog.json`` (:mod:`rslp.pipeline.catalog`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from upath import UPath

from rslp import hints, log
from rslp.errors import PermanentError
from rslp.jobroot import JobRoot
from rslp.pipeline.catalog import CATALOG_FILE, ROLLING_FILE, build_catalog, write_catalog
from rslp.pipeline.config import load_pipeline_config, subscriptions
from rslp.pipeline.timerange import NoImageryError, TimeRange, TimeRangeError, parse_time
from rslp.pipeline.write_jobs import enqueue, pending_tasks
from rslp.queue.placement import default_queue_url
from rslp.storage import UnreadableFile, absolute, is_local, read_json_object, write_json_atomic

logger = log.get(__name__)

Cadence = Literal["day", "week", "month"]
#: Written in a period's job root by each rolling run that enqueued it.
ENQUEUED_FILE = "enqueued.json"


@dataclass(frozen=True)
class Period:
    """One period of a rolling run: its folder name and its time range."""

    name: str
    span: TimeRange


def _floor(t: datetime, every: Cadence) -> datetime:
    day = t.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if every == "week":
        return day - timedelta(days=day.weekday())
    if every == "month":
        return day.replace(day=1)
    return day


def _next(t: datetime, every: Cadence) -> datetime:
    if every == "day":
        return t + timedelta(days=1)
    if every == "week":
        return t + timedelta(weeks=1)
    return t.replace(year=t.year + t.month // 12, month=t.month % 12 + 1)


def _name(t: datetime, every: Cadence) -> str:
    if every == "week":
        year, week, _ = t.isocalendar()
        return f"{year}-W{week:02d}"
    return t.strftime("%Y-%m" if every == "month" else "%Y-%m-%d")


def periods(every: Cadence, since: datetime, until: datetime) -> list[Period]:
    """The periods that start at or after ``since``'s period and have ended by ``until``, oldest first.

    Days and weeks (Monday to Monday, named by ISO week) and months are in UTC.
    """
    out = []
    start = _floor(since, every)
    while (end := _next(start, every)) <= until:
        out.append(Period(_name(start, every), TimeRange(start, end)))
        start = end
    return out


def _claim(root: UPath, config: str, request: str, every: Cadence) -> None:
    """Write ROOT/rolling.json, or check that the root is already for this config, request and cadence."""
    wanted = {"config": config, "request": request, "every": every}
    path = root / ROLLING_FILE
    if path.exists():
        try:
            have = read_json_object(path)
        except UnreadableFile as e:
            raise PermanentError(f"{e}; this --root is not a rolling root rslp rolling made") from None
        if {k: have.get(k) for k in wanted} != wanted:
            raise PermanentError(
                f"{path}: this rolling root is for {have.get('config')}, {have.get('request')} every "
                f"{have.get('every')}, not {config}, {request} every {every}; use another --root"
            )
        return
    write_json_atomic(path, wanted)


def last_activity(job_root: UPath) -> float:
    """When the period last moved: its newest marker, or its last enqueue by a rolling run (epoch seconds)."""
    try:
        enqueued = read_json_object(job_root / ENQUEUED_FILE).get("time")
    except (OSError, UnreadableFile):
        enqueued = None
    times = [float(enqueued)] if isinstance(enqueued, int | float) and not isinstance(enqueued, bool) else []
    root = JobRoot(str(job_root))
    for step in root.steps():
        if (newest := root.newest_marker(step)) is not None:
            times.append(newest)
    return max(times, default=0.0)


def rolling(
    config: str,
    request: str,
    root: str,
    every: Cadence,
    since: str,
    until: str | None = None,
    queue: str | None = None,
    requeue_after: float = 3600.0,
) -> int:
    """Make one job per period under ROOT/<period>/ and enqueue what is missing; safe to run from cron or CI.

    Each period that has ended by UNTIL is an ordinary job with the period as its time
    range. A finished period publishes nothing; one still moving is left to its
    workers; one with no marker written for REQUEUE_AFTER seconds is taken as stalled
    and gets its missing tasks again. Prints one summary line with the number of tasks
    published, and rebuilds ROOT/catalog.json. Exits non-zero on any failure.

    Args:
        config: the pipeline.yaml.
        request: the request GeoJSON (WGS84).
        root: the rolling root (local or gs://): one job root per period, and catalog.json.
        every: the cadence: day, week (ISO, Monday to Monday) or month, in UTC.
        since: the first period is the one holding this time (ISO 8601, e.g. 2026-01).
        until: run the periods that have ended by then (ISO 8601; default: now).
        queue: pubsub://PROJECT_ID or local://PATH.db (default: an embedded queue on this
            machine's disk, named after ROOT).
        requeue_after: seconds without a new marker after which an unfinished period's
            missing tasks are published again (their messages are taken as lost).

    Returns:
        The number of tasks published.
    """
    pipeline = load_pipeline_config(config)
    if pipeline.output_dir:
        raise PermanentError(
            pipeline.where("output_dir: rolling runs keep each period's output in ROOT/<period>/output; remove it")
        )
    first = parse_time(since, "--since")
    last = parse_time(until, "--until") if until else datetime.now(UTC)
    if last <= first:
        raise TimeRangeError(f"--until: {until} is not after --since {since}")
    root_path = UPath(absolute(root))
    if queue is None and not is_local(root_path):
        raise PermanentError(
            f"--queue: the rolling root {root} is not on local disk; name the queue (pubsub://PROJECT)"
        )
    queue_url = queue or default_queue_url(str(root_path))
    _claim(root_path, str(pipeline.source), absolute(request), every)
    todo = periods(every, first, last)
    outcome: dict[str, list[str]] = {k: [] for k in ("new", "resumed", "moving", "done", "without imagery")}
    published = 0
    # Finished periods, from the last catalog and a few file reads: never listed again.
    finished = {p["id"] for p in build_catalog(root_path)["periods"] if p["status"] == "done"}
    for period in todo:
        job_root = root_path / period.name
        if JobRoot(job_root).manifest_path.exists():
            if period.name in finished or next(pending_tasks(JobRoot(str(job_root)).read_manifest()), None) is None:
                outcome["done"].append(period.name)
                continue
            if time.time() - last_activity(job_root) < requeue_after:
                outcome["moving"].append(period.name)
                continue
            kind = "resumed"
        else:
            kind = "new"
        try:
            # A stalled period's tasks were published and then went nowhere: send them again.
            _, sent, _, _ = enqueue(config, request, str(job_root), queue_url, period.span, republish=kind == "resumed")
        except NoImageryError as e:
            logger.debug("no imagery in period", period=period.name, reason=str(e))  # named in the summary
            outcome["without imagery"].append(period.name)
            continue
        write_json_atomic(job_root / ENQUEUED_FILE, {"time": time.time(), "tasks": sent, "queue": queue_url})
        published += sent
        outcome[kind].append(period.name)
    catalog = write_catalog(root_path)
    done = sum(p["status"] == "done" for p in catalog["periods"])
    counts = ", ".join(f"{len(names)} {kind}" for kind, names in outcome.items())
    lines = [
        f"rolling {root_path} every {every}: {len(todo)} periods ({counts}); {published} tasks published "
        f"on {queue_url}; {done} periods finished, see {root_path / CATALOG_FILE}"
    ]
    if skipped := outcome["without imagery"]:
        named = ", ".join(skipped) if len(skipped) <= 4 else f"{skipped[0]}, {skipped[1]}, ..., {skipped[-1]}"
        lines.append(f"  without imagery (tried again next run): {named}")
    lines.append(f"  watch it: {hints.status_root(str(root_path))}")
    if published:
        subs = subscriptions(pipeline.partition_steps + pipeline.job_steps, pipeline.topics)
        lines.append(f"  run workers: {hints.worker(queue_url, subs, str(root_path / todo[0].name))}")
    print("\n".join(lines))
    return published
