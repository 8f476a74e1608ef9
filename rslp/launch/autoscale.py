"""``rslp fleet autoscale``: keep each topic's pool sized to its work and the deadline.

A control loop over the :class:`~rslp.launch.fleet.FleetClient` seam, so it drives
Beaker and the local backend alike. Every ``interval`` seconds it reads the job's
ledger (:func:`~rslp.launch.sizing.measure`: tasks left, tasks ready, measured
durations) and, per topic, compares the workers the pool has with those it needs:

- **target** = the deadline's arithmetic (:func:`~rslp.launch.sizing.workers_for`),
  but never more workers than the pool has tasks ready (a GPU pool is not started
  while its predict tasks still wait on materialize), and at least ``min_workers``.
- **up** at once: work is waiting, but by at most :func:`growth` workers a check (the
  pool's size, or :data:`~rslp.launch.sizing.HANDFUL` from nothing): a sudden reading,
  true or forged, doubles a pool per check at most, and never past the ceiling
  (``max_workers``, or :data:`~rslp.launch.sizing.DEFAULT_MAX_WORKERS`). When a check
  would launch more than a handful in all, it prints the total first.
- **down** only after the target stayed below the pool for ``cooldown`` checks in a
  row (hysteresis: a pool never flaps on one noisy reading), and through the backend's
  cancel, which the worker sees as a preemption: it hands its task back, nothing lost.
  Idle workers also leave by themselves after their ``idle_timeout``.
- **done**: when no task of the job is left, every pool is stopped and the loop ends.

Pool ``P`` of fleet ``F`` is the fleet ``F.P`` (worker names ``F.P-LAUNCH-wI``), so
``rslp fleet status F`` lists all of F's pools and ``rslp fleet stop F`` stops them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from rslp import log
from rslp.console import printable
from rslp.launch.config import LaunchConfig
from rslp.launch.fleet import FleetClient, fleet_workloads
from rslp.launch.sizing import HANDFUL, PoolSize, measure, workers_for

logger = log.get(__name__)


def pool_fleet(fleet: str, topic: str) -> str:
    """The fleet name of ``fleet``'s pool for ``topic``."""
    return f"{fleet}.{topic}"


@dataclass
class Decision:
    """What one check decided for one pool."""

    topic: str
    current: int
    target: int
    action: str  # "up", "down", "hold", "stop"
    changed: int = 0

    def line(self) -> str:
        """``demo-gpu: 2 workers, target 4: up +2``."""
        change = f" {self.changed:+d}" if self.changed else ""
        return printable(f"{self.topic}: {self.current} workers, target {self.target}: {self.action}{change}")


def growth(current: int) -> int:
    """The most workers one check adds to a pool of ``current``: doubling, from a handful."""
    return max(current, HANDFUL)


class Autoscaler:
    """Sizes the pools of one job's topics; :meth:`check` once, :meth:`run` until the job is done.

    ``config_for(topic)`` gives the launch config of the pool that pulls ``topic``'s
    subscription (the same image, resources and worker flags as ``rslp launch``).
    """

    def __init__(
        self,
        client: FleetClient,
        fleet: str,
        job_root: str,
        config_for: Callable[[str], LaunchConfig],
        deadline_at: float,
        min_workers: int = 0,
        max_workers: int | None = None,
        cooldown: int = 3,
        guesses: dict[str, float] | None = None,
        workspace: str | None = None,
    ) -> None:
        self.client = client
        self.fleet = fleet
        self.job_root = job_root
        self.config_for = config_for
        self.deadline_at = deadline_at
        self.min_workers = min_workers
        self.max_workers = max_workers
        self.cooldown = cooldown
        self.guesses = guesses
        self.workspace = workspace
        self._below: dict[str, int] = {}

    def target(self, pool: PoolSize, now: float) -> int:
        """Workers ``pool`` should have now (see the module docstring)."""
        if pool.left == 0:
            return 0
        needed = workers_for(pool, self.deadline_at - now, self.max_workers)
        return max(min(needed, pool.ready), self.min_workers)

    def check(self, now: float | None = None) -> tuple[list[Decision], bool]:
        """One look at the job and the pools; returns the decisions and whether the job is done."""
        now = time.time() if now is None else now
        pools = measure(self.job_root, self.guesses)
        finished = all(pool.left == 0 for pool in pools.values())
        looked = []
        for topic, pool in pools.items():
            workers = fleet_workloads(self.client, self.workspace, pool_fleet(self.fleet, topic), active_only=True)
            target = 0 if finished else min(self.target(pool, now), len(workers) + growth(len(workers)))
            looked.append((topic, workers, target))
        ups = {topic: target - len(workers) for topic, workers, target in looked if target > len(workers)}
        if sum(ups.values()) > HANDFUL:
            parts = ", ".join(f"{topic} +{n}" for topic, n in ups.items())
            print(printable(f"launching {sum(ups.values())} workers of fleet {self.fleet}: {parts}"), flush=True)
        decisions = []
        for topic, workers, target in looked:
            current = len(workers)
            decision = Decision(topic, current, target, "hold")
            if target > current:
                self._below[topic] = 0
                from rslp.launch.beaker import launch_fleet  # not at import: `rslp fleet status` needs pool_fleet only

                launch_fleet(self.client, self.config_for(topic), target - current)
                decision.action, decision.changed = "up", target - current
            elif target < current:
                self._below[topic] = self._below.get(topic, 0) + 1
                if finished or self._below[topic] >= self.cooldown:
                    surplus = [w.id for w in workers[target:]]  # the newest launches go first
                    stopped = len(self.client.cancel(surplus))
                    decision.action, decision.changed = ("stop" if finished else "down"), -stopped
                    self._below[topic] = 0
            else:
                self._below[topic] = 0
            decisions.append(decision)
        return decisions, finished

    def run(self, interval: float, max_checks: int | None = None) -> int:
        """Check every ``interval`` seconds until the job is done (or ``max_checks``); returns the checks made."""
        checks = 0
        while True:
            decisions, finished = self.check()
            checks += 1
            stamp = time.strftime("%H:%M:%S")
            for d in decisions:
                print(f"{stamp} {d.line()}", flush=True)
                if d.action != "hold":
                    logger.info("autoscaled", topic=d.topic, current=d.current, target=d.target, action=d.action)
            if finished:
                print(f"{stamp} job done: every pool of fleet {self.fleet} is stopped", flush=True)
                return checks
            if max_checks is not None and checks >= max_checks:
                return checks
            time.sleep(interval)
