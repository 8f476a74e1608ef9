"""The worker: pull one task, keep its lease, run it, mark it, publish downstream, ack.

Read top to bottom: :meth:`Worker.run` (the poll loop), then
:meth:`Worker.handle` and the named steps of one task's life: decode, check done,
run, then finish as done / retry / dead letter / hand back. Its settings are
:class:`~rslp.worker.settings.WorkerSettings`; what it publishes goes through
:class:`~rslp.worker.publish.Publisher`.

Invariants this module owns (ARCHITECTURE.md):

- Order of a success is work, done marker, downstream publishes confirmed, ack. The
  message is never acked before its outputs and marker are durable.
- A task whose done marker exists is not run again, but its downstream tasks are
  republished (the first run may have died between marking and publishing).
- One task at a time, its lease kept by :class:`LeaseKeeper` while it runs in the
  child process of :class:`TaskRunner`.
- Bad input (not JSON, unknown workflow, bad args) goes straight to the dead-letter
  topic with a one-line reason; a failing task is retried with backoff, then
  dead-lettered; nothing a message does can kill the worker. What breaks while
  handling a message that names a job (marker I/O in its root, publishing what its
  markers record to a topic that is missing) dead-letters that message.
- A message's failure never stops the worker: after ``retries`` failed tasks in a row
  it checks its own health (:mod:`rslp.worker.health`) and stops only if that fails
  (the ancestor's ``exit_on_failures`` stops at once, as the ancestor did).
- A task whose lease was lost while it ran is never acked: another worker may hold
  the message. Its done marker and downstream publishes still go out, because both
  are idempotent.
- Queue and storage calls ride out transient errors (:mod:`rslp.weather`); one that
  cannot be got past ends the worker with its exit code rather than being counted as
  the task's failure.
- On any subscription the worker gives it dead letters at start, and a message that
  cannot be dead-lettered is held, never counted as a failure (:mod:`rslp.queue.dead_letters`).
- Preemption hands the task back by republishing it unchanged (same id and attempt)
  and acking the original, so it does not spend the task's delivery budget.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rslp import log
from rslp.errors import ExitCode, typed
from rslp.jobroot import JobRoot, JobRootError
from rslp.paths import under
from rslp.queue import Queue, Received, dead_letter_name, dead_letters, open_queue
from rslp.task import Downstream, Task, TaskDecodeError, decode_task
from rslp.weather import CloudError, CloudUnavailableError, Weather
from rslp.worker import guard
from rslp.worker.health import health_problem
from rslp.worker.heartbeat import MarkerHeartbeat
from rslp.worker.lease import LeaseKeeper
from rslp.worker.metrics import WorkerMetrics
from rslp.worker.publish import DownstreamRefusedError, Publisher
from rslp.worker.retry import RetryPolicy, hold_for
from rslp.worker.runner import Outcome, TaskRunner
from rslp.worker.settings import WorkerSettings
from rslp.worker.shutdown import Shutdown
from rslp.worker.task_claim import TaskClaim

#: Environment variables Beaker injects; logged so a task's lines lead back to its job.
BEAKER_ENV = ("BEAKER_JOB_ID", "BEAKER_WORKLOAD_ID", "BEAKER_EXPERIMENT_ID", "BEAKER_NODE_HOSTNAME")


class Worker:
    """One worker process. Use :meth:`run`; it returns the reason it stopped."""

    def __init__(self, settings: WorkerSettings, queue: Queue | None = None) -> None:
        self.settings = settings
        self.shutdown = Shutdown()
        self.weather = Weather(patience=settings.cloud_patience, interrupt=self.shutdown.event)
        self.queue = queue or open_queue(settings.queue, weather=self.weather)
        self.worker_id = settings.worker_id or _default_worker_id()
        self.retry = RetryPolicy(settings.max_attempts, settings.retry_sleep)
        self.publisher = Publisher(self.queue, settings.publish_patience)
        self.runner = TaskRunner(settings.trust())
        self.metrics = WorkerMetrics()
        #: Distinct tasks (or messages) that failed in a row on this worker; a success empties it.
        self.failed_streak: set[str] = set()
        self.scratch_root = Path(settings.scratch_root or Path.home() / ".cache" / "rslp" / "scratch")
        beaker = {k.lower(): os.environ[k] for k in BEAKER_ENV if k in os.environ}
        log.bind(worker_id=self.worker_id, **beaker)
        self.log = log.get("rslp.worker")

    # -- the loop ---------------------------------------------------------------------

    def run(self) -> str:
        """Pull and handle tasks until idle, preempted, or unwell (:meth:`_unwell`)."""
        self.shutdown.install()
        if self.settings.metrics_port is not None:
            self.metrics.start(self.settings.metrics_port, self.settings.metrics_address)
        self.log.info("worker_started", queue=self.settings.queue, subscriptions=self.settings.subscriptions)
        idle_since = time.monotonic()
        sleep = self.settings.poll_interval
        try:
            if not self.settings.flush_messages:
                self._start()
            while not self.shutdown.is_set():
                message = self._pull()
                if message is None:
                    idle = time.monotonic() - idle_since
                    if self.settings.idle_timeout > 0 and idle >= self.settings.idle_timeout:
                        self.log.info("idle_exit", idle_seconds=round(idle, 1))
                        return "idle"
                    remaining = self.settings.idle_timeout - idle if self.settings.idle_timeout > 0 else sleep
                    self.shutdown.wait(min(sleep, remaining))  # never sleep past the idle deadline
                    sleep = min(1.0, sleep * 2)
                    continue
                sleep = self.settings.poll_interval
                if self.settings.flush_messages:
                    self.queue.ack(message)
                    self.log.info("flushed", message_id=message.message_id)
                else:
                    self._handle_safely(message)
                idle_since = time.monotonic()
                if len(self.failed_streak) >= max(1, self.settings.retries) and (stop := self._unwell()):
                    return stop
            self.log.info("preempted_exit", signal=self.shutdown.signal_name)
            return "preempted"
        finally:
            self.runner.close()
            self.queue.close()
            self.metrics.stop()
            self.shutdown.uninstall()

    def _unwell(self) -> str | None:
        """After a run of failed tasks: the reason to stop, or None (the failures were the tasks' own).

        The ancestor's contract (``exit_on_failures``) stops at once. Otherwise the worker
        checks itself (:mod:`rslp.worker.health`): a message's failure is the message's,
        and only a worker that fails its own canary stops.
        """
        failed = len(self.failed_streak)
        if self.settings.exit_on_failures:
            self.log.error("too_many_failures", consecutive_failures=failed)
            return "failures"
        problem = health_problem(self.runner, self.scratch_root, self.shutdown.event)
        if problem is not None:
            self.log.error("worker_unwell", problem=problem, failed_tasks=failed)
            return "unwell"
        self.log.warning("failures_not_the_workers", failed_tasks=failed, checked="scratch and a fresh task process")
        self.failed_streak.clear()
        return None

    def _start(self) -> None:
        """Check every subscription, start the task process, give each subscription its dead letters.

        A missing subscription stops the worker here, before any work, in one line naming
        the command that makes it. Preempted while riding out an outage: nothing more is
        started, and the loop exits cleanly.
        """
        for subscription in self.settings.subscriptions:
            try:
                self.queue.topic_of(subscription)
            except CloudUnavailableError:
                if self.shutdown.is_set():
                    return
                raise
        self.runner.start()
        for subscription in self.settings.subscriptions:
            event, fields = dead_letters.prepare(self.queue, self.settings.queue, subscription)
            (self.log.warning if event == "dead_letters_unavailable" else self.log.info)(event, **fields)

    def _pull(self) -> Received | None:
        # Pub/Sub blocks on an empty subscription: keep that short enough for idle exit.
        idle = self.settings.idle_timeout
        wait = min(5.0, idle / 3) if idle > 0 else 5.0
        try:
            return self.queue.pull_first(self.settings.subscriptions, self.settings.lease_seconds, wait=wait)
        except CloudUnavailableError:
            if self.shutdown.is_set():  # preempted while riding out an outage: that is a clean exit
                return None
            raise

    def _handle_safely(self, message: Received) -> None:
        """Handle a message; a queue or storage failure gives it back instead of killing the worker."""
        try:
            self.handle(message)
        except CloudError:
            raise  # already retried for its patience, or permanent: the worker cannot go on
        except Exception as e:  # infrastructure errors must not take the fleet down
            self.failed_streak.add(message.message_id)
            self.log.exception("handle_failed", error=typed(e))
            with contextlib.suppress(Exception):
                self.queue.nack(message, delay=self.settings.retry_sleep)

    # -- one task -----------------------------------------------------------------------

    def handle(self, message: Received) -> None:
        """Take one message through its whole life; never raises for a bad message."""
        try:
            task = decode_task(message.data)
        except TaskDecodeError as e:
            self._dead_letter(message, None, e.reason, kind="malformed")
            self.metrics.task_finished("malformed", None)
            return
        log.bind(**task.log_fields())
        try:
            self._handle_task(message, task)
        except (JobRootError, DownstreamRefusedError) as e:
            # What the message's job holds or records broke (a marker path that is a folder, a
            # recorded topic that does not exist): the message's fault, never the worker's.
            # Only an admitted task gets here, so its job root is one this worker accepts.
            ledger = JobRoot(task.job_root, weather=self.weather) if task.job_root else None
            self._dead_letter(message, task, str(e), kind="job_root", ledger=ledger)
            self.metrics.task_finished("malformed", None)
        finally:
            log.unbind(*task.log_fields())

    def _handle_task(self, message: Received, task: Task) -> None:
        self.log.info("received", delivery_attempt=message.delivery_attempt, message_id=message.message_id)
        try:
            if (wait := guard.delay(task, self.settings.max_delay)) > 0:
                self.queue.nack(message, delay=hold_for(wait))  # a retry in backoff: not yet
                return
            admitted = guard.admit(task, self.settings.job_roots, self.weather, self.settings.allow_diagnostics)
        except guard.Rejected as e:  # the message's content, not the worker's health: no failure counted
            self._dead_letter(message, task, e.reason, kind=e.kind)
            self.metrics.task_finished("malformed", None)  # names come from the message: not a label
            return
        workflow, ledger = admitted.workflow, admitted.ledger
        if ledger is not None and (downstream := admitted.done_downstream) is not None:
            self.log.info("skipped_done", downstream=len(downstream))
            self.publisher.downstream(task, downstream)
            self.queue.ack(message)
            self.metrics.task_finished("skipped", task.name)
            return
        time_limit = guard.time_limit(task, workflow, self.settings.time_limit, self.settings.max_lease)
        scratch = under(self.scratch_root, task.task_id)
        self.scratch_root.mkdir(mode=0o700, parents=True, exist_ok=True)
        scratch.mkdir(mode=0o700, exist_ok=True)
        claim = TaskClaim(ledger, task, self.worker_id)  # held from here until the outcome is settled
        try:
            if not claim.take():  # another worker runs it now: back later, spending no attempt nor delivery
                self._hand_back(message, later := claim.later())
                self.log.info("claimed_elsewhere", due=later.not_before)
                return
            self.log.info("started", time_limit=time_limit)
            lease = LeaseKeeper(self.queue, message, self.settings.lease_seconds, self.settings.max_lease, self.log)
            with lease:
                with self._heartbeat(ledger, task, lease):  # stopped before the final marker is written
                    outcome = self.runner.run(
                        task, time_limit, str(scratch), self.shutdown, self.settings.grace_seconds, admitted.manifest
                    )
                if not outcome.ok:  # the run is over: a retry or a handed-back copy may run at once
                    claim.give_up()
                if outcome.downstream:
                    topics = admitted.topics or {self.queue.topic_of(message.subscription)}
                    outcome = guard.check_downstream(task, outcome, topics, admitted.manifest)
                if lease.lost:
                    self._lease_lost(task, outcome, ledger, lease.lost)
                else:
                    self._finish(message, task, outcome, ledger)
            self.metrics.task_finished(outcome.kind, task.name, outcome.duration)
            self.metrics.lease_extended(lease.extensions)
        finally:
            claim.give_up()
            shutil.rmtree(scratch, ignore_errors=True)

    def _heartbeat(
        self, ledger: JobRoot | None, task: Task, lease: LeaseKeeper
    ) -> contextlib.AbstractContextManager[Any]:
        """The running marker, kept fresh while the lease is held (``rslp status`` spots stalled tasks)."""
        if ledger is None:
            return contextlib.nullcontext()
        alive = lambda: lease.lost is None  # noqa: E731
        return MarkerHeartbeat(ledger, task, self.worker_id, self.settings.lease_seconds, alive, self.log)

    def _finish(self, message: Received, task: Task, outcome: Outcome, ledger: JobRoot | None) -> None:
        duration = round(outcome.duration, 3)
        if outcome.ok:
            downstream = self._complete(task, outcome, ledger)
            self.queue.ack(message)
            self.failed_streak.clear()
            self.log.info("done", duration=duration, downstream=len(downstream))
        elif outcome.kind == "interrupted":
            self._hand_back(message, task)
            if ledger is not None:  # still queued, not failed: preemption spends no attempt
                try:
                    ledger.mark(task, "running", worker=self.worker_id, handed_back=self.shutdown.signal_name)
                except JobRootError as e:  # handed back already: the next delivery meets it
                    self.log.warning("marker_not_written", error=str(e))
            self.log.info("preempted", duration=duration, signal=self.shutdown.signal_name)
        elif outcome.kind == "permanent":
            self._dead_letter(message, task, outcome.reason, kind="permanent", ledger=ledger, tb=outcome.traceback)
        else:
            self._failed(message, task, outcome, ledger)

    def _complete(self, task: Task, outcome: Outcome, ledger: JobRoot | None) -> list[Downstream]:
        """Mark a successful task done and publish its downstream tasks (both idempotent)."""
        downstream = [
            d.model_copy(update={"task": d.task.model_copy(update={"parent": task.task_id})})
            for d in outcome.downstream
        ]
        if ledger is not None:
            ledger.mark(
                task,
                "done",
                worker=self.worker_id,
                duration=round(outcome.duration, 3),
                downstream=[d.model_dump(mode="json") for d in downstream],
            )
        self.publisher.downstream(task, downstream)
        return downstream

    def _lease_lost(self, task: Task, outcome: Outcome, ledger: JobRoot | None, why: str) -> None:
        """The lease ran out while the task ran: never ack, the message may be another worker's now.

        A success is still marked done and its downstream published: the redelivered
        copy then finds the done marker, skips the work and republishes the same
        deterministic task ids, which their own done markers make harmless. Anything
        else is left to redelivery (no retry is published, so no attempt is spent twice).
        """
        if outcome.ok:
            self._complete(task, outcome, ledger)
        self.log.warning(
            "lease_lost_not_acked", kind=outcome.kind, lease_error=why, duration=round(outcome.duration, 3)
        )

    def _failed(self, message: Received, task: Task, outcome: Outcome, ledger: JobRoot | None) -> None:
        """A transient failure, timeout or crash: retry later, or dead-letter when out of attempts."""
        self.failed_streak.add(task.task_id)
        if not self.retry.should_retry(task):
            reason = f"{outcome.kind} on attempt {task.attempt + 1}/{self.retry.max_attempts}: {outcome.reason}"
            self._dead_letter(message, task, reason, kind=outcome.kind, ledger=ledger, tb=outcome.traceback)
            return
        delay = self.retry.backoff(task)
        retry = task.model_copy(
            update={"attempt": task.attempt + 1, "not_before": datetime.now(UTC) + timedelta(seconds=delay)}
        )
        if ledger is not None:
            ledger.mark(
                task,
                "failed",
                worker=self.worker_id,
                kind=outcome.kind,
                error=outcome.reason,
                attempt=task.attempt + 1,
                traceback=outcome.traceback,
            )
        self.publisher.publish(self.queue.topic_of(message.subscription), [retry])
        self.queue.ack(message)
        self.log.warning(
            "retried",
            kind=outcome.kind,
            error=outcome.reason,
            retry_in=round(delay, 1),
            duration=round(outcome.duration, 3),
        )

    def _dead_letter(
        self,
        message: Received,
        task: Task | None,
        reason: str,
        kind: str,
        ledger: JobRoot | None = None,
        tb: str = "",
    ) -> None:
        attempts = (task.attempt + 1) if task else message.delivery_attempt
        attributes = dead_letters.attributes(kind, attempts, self.worker_id, tb)
        if ledger is not None and task is not None:
            try:
                info = {"kind": kind, "error": reason, "attempts": attempts, "traceback": tb}
                ledger.mark(task, "dead", worker=self.worker_id, **info)
            except JobRootError as e:  # the dead letter itself still goes out, with the reason
                self.log.warning("dead_marker_not_written", error=str(e))
        error = dead_letters.move(self.queue, message, reason, attributes)
        if error is None:
            self.log.error("dead_lettered", kind=kind, reason=reason, attempts=attempts)
            return
        # Not the task's fault: not counted as a failure, and the message is held, not lost.
        self.log.error(
            "dead_letter_held",
            kind=kind,
            reason=reason,
            attempts=attempts,
            dead_letter_topic=dead_letter_name(message.subscription),
            error=error,
            hold_seconds=dead_letters.HOLD_SECONDS,
            fix=dead_letters.fix_hint(self.settings.queue, message.subscription),
        )

    def _hand_back(self, message: Received, task: Task) -> None:
        """Preempted: republish the task unchanged, then ack, so no delivery is spent."""
        try:
            self.publisher.publish(self.queue.topic_of(message.subscription), [task], patience=5.0)
            self.queue.ack(message)
        except Exception as e:  # noqa: BLE001 - fall back to a plain nack; Pub/Sub will redeliver
            self.log.warning("hand_back_republish_failed", error=str(e))
            self.queue.nack(message)


def _default_worker_id() -> str:
    name = os.environ.get("RSLP_WORKER_NAME") or os.environ.get("BEAKER_JOB_ID") or socket.gethostname()
    return f"{name}-{os.getpid()}"


#: The process exit code for each reason :meth:`Worker.run` stops; Beaker shows it as the job's.
STOP_CODES: dict[str, ExitCode] = {
    "idle": ExitCode.OK,
    "preempted": ExitCode.OK,
    "failures": ExitCode.TOO_MANY_FAILURES,
    "unwell": ExitCode.TOO_MANY_FAILURES,
}


def run_worker(settings: WorkerSettings) -> ExitCode:
    """Run a worker in this process until it stops; returns the exit code for why it stopped."""
    return STOP_CODES[Worker(settings).run()]
