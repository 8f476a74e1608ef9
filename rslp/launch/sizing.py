"""How many workers each topic's pool needs to finish a job by a deadline.

The arithmetic, per topic: the work left is, for each step on that topic, the tasks
not yet done times the step's median task duration (measured in a sample of its done
markers, or the configured guess while none is done); the pool needs that many
seconds of work divided by the time left, rounded up, capped by ``max_workers`` (or
:data:`DEFAULT_MAX_WORKERS` when the operator gives none) and by the tasks left (a
worker without a task only costs). :meth:`PoolSize.line` prints the sum so a user can
check it.

The operator's money is the operator's: the numbers come from a job root, which others
may write, so none of them can size a fleet past the ceiling. Tasks are counted only
by the ids the plan derives (job id, partition ``p<index>`` below the header's count,
step), so markers of partitions the job does not have count for nothing; a duration a
marker claims outside :data:`PLAUSIBLE_SECONDS` is ignored.

Cost is one marker listing per step (the same as ``rslp status``) plus one hash per
planned task: durations come from at most :data:`DURATION_SAMPLE` marker reads.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass, field

from rslp.console import duration, printable
from rslp.jobroot import JobRoot
from rslp.jobroot.plan import check_partition_count, planned_states
from rslp.storage import UnreadableFile, read_json_object

#: Done markers read per step for its median duration.
DURATION_SAMPLE = 25
#: Seconds a task of each step is guessed to take before any is done (override per step).
DEFAULT_GUESS = {
    "create_windows": 5.0,
    "prepare": 10.0,
    "ingest": 60.0,
    "materialize": 60.0,
    "predict": 60.0,
    "postprocess": 10.0,
    "combine": 300.0,
    "observe": 30.0,
}
FALLBACK_GUESS = 60.0
#: Workers per pool when the operator gives no ``--max_workers``: a job root's numbers never size a fleet past it.
DEFAULT_MAX_WORKERS = 20
#: A launch of more workers than this prints the total first.
HANDFUL = 4
#: Task durations a done marker may claim: no task holds its lease past a worker's default ``--max_lease`` (24 h).
PLAUSIBLE_SECONDS = (0.0, 24 * 3600.0)


def ceiling(max_workers: int | None) -> int:
    """The most workers a pool gets: the operator's ``--max_workers``, else :data:`DEFAULT_MAX_WORKERS`."""
    return DEFAULT_MAX_WORKERS if max_workers is None else max_workers


@dataclass
class StepWork:
    """One step's tasks left (not done, not dead), those ready now, and seconds a task."""

    step: str
    left: int
    ready: int
    seconds: float
    measured: bool


@dataclass
class PoolSize:
    """One topic's pool: its steps' work and the workers it needs."""

    topic: str
    steps: list[StepWork] = field(default_factory=list)
    workers: int = 0

    @property
    def left(self) -> int:
        return sum(s.left for s in self.steps)

    @property
    def ready(self) -> int:
        return sum(s.ready for s in self.steps)

    @property
    def work_seconds(self) -> float:
        return sum(s.left * s.seconds for s in self.steps)

    def line(self, time_left: float, max_workers: int | None) -> str:
        """``topic: 96 tasks left (predict 96 x 2.1s measured) = 3m22s of work / 6h00m left = 1 worker``."""
        parts = ", ".join(
            f"{s.step} {s.left} x {s.seconds:.1f}s {'measured' if s.measured else 'guessed'}"
            for s in self.steps
            if s.left
        )
        cap = (
            f", capped at --max_workers {max_workers}"
            if max_workers is not None
            else f", capped at {DEFAULT_MAX_WORKERS} (the default; --max_workers N to change)"
        )
        return printable(  # topics and steps come from the job's header
            f"{self.topic}: {self.left} tasks left ({parts or 'none'}) = {duration(self.work_seconds)} of work"
            f" / {duration(time_left)} left = {self.workers} worker{'' if self.workers == 1 else 's'}{cap}"
        )


def parse_duration(value: str) -> float:
    """``6h``, ``90m``, ``1h30m``, ``45s``, ``6 hours`` or plain seconds, as seconds (pytimeparse reads the units)."""
    from pytimeparse import parse

    try:
        seconds = float(value)
    except ValueError:
        parsed = parse(value.strip())
        seconds = float("nan") if parsed is None else float(parsed)
    if not 0 <= seconds < math.inf:  # NaN: nothing parsed
        raise ValueError(f"duration {value!r} must look like '6h', '90m', '1h30m' or a number of seconds")
    return seconds


def measure(job_root: str, guesses: dict[str, float] | None = None) -> dict[str, PoolSize]:
    """Every topic's pool with its steps' work left (``workers`` not yet set)."""
    ledger = JobRoot(job_root)
    manifest = ledger.read_manifest()
    check_partition_count(manifest, job_root)
    guesses = {**DEFAULT_GUESS, **(guesses or {})}
    partitions = manifest.partition_count
    pools: dict[str, PoolSize] = {}
    done_before: int | None = None  # tasks done of the previous per-partition step
    for step in manifest.steps + manifest.job_steps:
        per_job = step in manifest.job_steps
        states = planned_states(ledger, manifest, step)
        done = [task_id for task_id, state in states.items() if state == "done"]
        dead = sum(state == "dead" for state in states.values())
        total = 1 if per_job else partitions
        left = max(0, total - len(done) - dead)
        if per_job:
            all_done = done_before == partitions if step == manifest.job_steps[0] else done_before == 1
            ready = left if all_done else 0
        else:
            ready = left if done_before is None else max(0, done_before - len(done) - dead)
        seconds, measured = _median_duration(ledger, step, done, guesses.get(step, FALLBACK_GUESS))
        topic = manifest.topics.get(step, step)
        pools.setdefault(topic, PoolSize(topic)).steps.append(StepWork(step, left, ready, seconds, measured))
        done_before = len(done)
    return pools


def _median_duration(ledger: JobRoot, step: str, done: list[str], guess: float) -> tuple[float, bool]:
    """The median of the plausible durations in a sample of ``step``'s done markers, or ``guess``."""
    low, high = PLAUSIBLE_SECONDS
    durations = []
    for task_id in random.sample(done, min(DURATION_SAMPLE, len(done))):
        try:
            duration = read_json_object(ledger.marker_path(step, task_id, "done")).get("duration")
        except (OSError, UnreadableFile):
            continue
        if isinstance(duration, int | float) and not isinstance(duration, bool) and low <= duration <= high:
            durations.append(float(duration))
    if not durations:
        return guess, False
    return statistics.median(durations), True


def workers_for(pool: PoolSize, time_left: float, max_workers: int | None, min_workers: int = 0) -> int:
    """Workers to finish ``pool``'s work in ``time_left``: one or more while work is left, at most one a task.

    Never more than the :func:`ceiling`, whatever the job root's numbers say.
    """
    if pool.left == 0:
        return min_workers
    needed = max(1, math.ceil(pool.work_seconds / max(time_left, 1.0)))
    return max(min(needed, pool.left, ceiling(max_workers)), min_workers)


def size_pools(
    job_root: str, time_left: float, max_workers: int | None = None, guesses: dict[str, float] | None = None
) -> list[PoolSize]:
    """The pools of a job's topics, each with the workers it needs to finish in ``time_left`` seconds."""
    pools = list(measure(job_root, guesses).values())
    for pool in pools:
        pool.workers = workers_for(pool, time_left, max_workers)
    return pools
