"""A job's progress on one machine as a few lines a person reads: one per step as it completes.

``rslp run`` and ``rslp demo`` send the workers' logs to a file; this is what the
console shows instead. It reads the markers (one listing per step, as ``rslp status``
does) and prints a step once all its tasks are done or dead, and a step's dead
letters as soon as they appear, so a failure is not hidden until the end.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import TextIO

from rslp.jobroot import JobManifest, JobRoot


class StepProgress:
    """Prints each step of ``manifest``'s job once, when it completes; call :meth:`update` now and then."""

    def __init__(self, manifest: JobManifest, out: TextIO | None = None) -> None:
        self.ledger = JobRoot(manifest.job_root)
        self.totals = {step: manifest.partition_count for step in manifest.steps}
        self.totals.update({step: 1 for step in manifest.job_steps})
        self.out = out or sys.stdout
        self.started = time.monotonic()
        self.completed: set[str] = set()
        self.dead: Counter[str] = Counter()
        self.width = max(len(step) for step in self.totals)

    def update(self) -> None:
        """Print what completed (or died) since the last call."""
        for step, total in self.totals.items():
            if step in self.completed:
                continue
            states = Counter(self.ledger.states(step).values())
            elapsed = time.monotonic() - self.started
            if states["dead"] > self.dead[step]:
                self.dead[step] = states["dead"]
                self._print(f"  {step:<{self.width}}  {states['dead']} of {total} dead-lettered  ({elapsed:.0f} s)")
            if states["done"] + states["dead"] >= total:
                self.completed.add(step)
                self._print(f"  {step:<{self.width}}  {states['done']}/{total} done  ({elapsed:.0f} s)")

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)
