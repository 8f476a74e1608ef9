"""One run of a task at a time: the worker claims a job task before running it.

Pub/Sub delivers at least once. A task can be delivered twice: its lease ran out under
a slow heartbeat while its first holder still works, write-jobs was rerun after a kill
(it republishes at most one span, :mod:`rslp.pipeline.publish_log`), or the queue
simply redelivered. The done marker makes a delivery that comes *after* a run a skip;
this claim makes one that comes *during* a run wait, so two workers never run one task
at the same time.

After admission and before the running marker and the task process, the worker takes
``claims/<step>/<task_id>.claim`` in the task's job root (:mod:`rslp.claims`: created
only if absent, kept fresh by a thread of the worker, stale :data:`CLAIM_SECONDS` after
its holder's last sign of life by the store's clock). It holds it until the task's
outcome is settled: past the done marker for a success (a later delivery then finds the
marker and is acked as a duplicate), and no longer than the run for anything else (a
retry in backoff or a preempted task handed back may run at once elsewhere).

A delivery that finds a fresh claim of another worker is handed back for later: the
task is republished unchanged but for ``not_before`` (when that claim would go stale if
its holder died now) and the delivery is acked, as preemption hands a task back. So it
spends neither an attempt nor the subscription's delivery budget, and is never
dead-lettered for waiting. A stale claim (its holder died) is taken over.

The claim's period is fixed, not the worker's ``--lease_seconds``: staleness is judged
by the taker, so every worker must judge it by the same period. A task without a job
root (the ancestor's diagnostics) has no shared storage to claim on and runs as before.
"""

from __future__ import annotations

from contextlib import ExitStack
from datetime import UTC, datetime, timedelta

from upath import UPath

from rslp.claims import Claims
from rslp.jobroot import JobRoot
from rslp.task import Task
from rslp.worker.lease import DEFAULT_LEASE_SECONDS

#: A task claim's lease: refreshed every third of it, stale when not refreshed for this long.
#: The same as the default queue lease, so a dead worker's task waits about as long for
#: its claim as for its message.
CLAIM_SECONDS = DEFAULT_LEASE_SECONDS


class TaskClaim:
    """``task``'s claim for this worker: :meth:`take` it, and it is kept fresh until :meth:`give_up`."""

    def __init__(self, ledger: JobRoot | None, task: Task, worker_id: str) -> None:
        self.ledger = ledger
        self.task = task
        self.worker_id = worker_id
        self.claims = Claims(CLAIM_SECONDS)
        self.path: UPath | None = None
        self._held = ExitStack()

    def take(self) -> bool:
        """Take the claim; False if another worker's fresh claim holds the task (always True without a job root)."""
        ledger = self.ledger
        if ledger is None:
            return True
        about = {"worker": self.worker_id, "task_id": self.task.task_id}

        def take() -> bool:
            self.path = ledger.claim_path(self.task.step or "task", self.task.task_id)
            return bool(self._held.enter_context(self.claims.holding({self.path: about})))

        # Storage errors as a marker's: the store's bad minutes ridden out, the rest the job root's fault.
        return ledger.guarded_io("take claim", ledger.root / "claims", take)

    def later(self) -> Task:
        """The task to hand back while another worker holds it: due when that holder's claim would go stale."""
        left = self.claims.left(self.path) if self.path is not None else None
        due = datetime.now(UTC) + timedelta(seconds=max(1.0, left or 0.0))
        return self.task.model_copy(update={"not_before": due})

    def give_up(self) -> None:
        """Stop refreshing the claim and delete it if it is still this worker's; safe to call again."""
        self._held.close()
