"""Prometheus metrics of one worker, served over HTTP when ``--metrics_port`` is given.

The worker calls three hooks: :meth:`WorkerMetrics.task_finished` once per message
it handles (with the outcome), :meth:`WorkerMetrics.lease_extended` with the number
of extensions a task's lease needed, and :meth:`WorkerMetrics.start` at start-up.
Each worker has its own registry, never the process-global one, so two workers in one
process (tests) cannot collide and nothing a library registers leaks into ours.

Labels are bounded: ``outcome`` is one of :data:`OUTCOMES`, ``workflow`` a registered
``project/workflow`` (or ``none`` for a message that is not a task), so a fleet's
series count does not grow with the number of tasks.
"""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

#: How a handled message ended: the runner's kinds, plus the worker's own decisions.
OUTCOMES = (
    "ok",  # ran and succeeded
    "error",  # raised; retried or dead-lettered
    "permanent",  # raised PermanentError; dead-lettered at once
    "timeout",  # ran past its time limit
    "crashed",  # its process died (OOM, kill -9)
    "interrupted",  # preempted; handed back
    "malformed",  # not a task, or an unknown workflow; dead-lettered
    "skipped",  # already done; downstream republished
)
#: Task durations span a no-op (ms) to predict on a large partition (hours).
DURATION_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14400, float("inf"))


class WorkerMetrics:
    """Counters and a histogram in a registry of their own; :meth:`start` serves them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.tasks = Counter(
            "rslp_tasks", "Messages handled, by outcome and workflow", ["outcome", "workflow"], registry=self.registry
        )
        self.duration = Histogram(
            "rslp_task_duration_seconds",
            "Time a task ran, by workflow and outcome",
            ["workflow", "outcome"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.lease_extensions = Counter(
            "rslp_lease_extensions", "Lease extensions made while tasks ran", registry=self.registry
        )
        self._server: WSGIServer | None = None

    def start(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` on ``addr:port`` from a daemon thread; returns the port (0 picks one).

        Loopback by default: the page names workflows and the fleet's load, so serving
        every interface (``0.0.0.0``) is the operator's explicit choice.
        """
        self._server, _ = start_http_server(port, addr, registry=self.registry)
        return int(self._server.server_port)

    def stop(self) -> None:
        """Stop serving (the worker is exiting)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def task_finished(self, outcome: str, workflow: str | None, duration: float | None = None) -> None:
        """One message handled; ``duration`` when the task ran (not for malformed or skipped ones)."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}; expected one of {OUTCOMES}")
        self.tasks.labels(outcome=outcome, workflow=workflow or "none").inc()
        if duration is not None:
            self.duration.labels(workflow=workflow or "none", outcome=outcome).observe(duration)

    def lease_extended(self, times: int = 1) -> None:
        """A running task's lease was extended ``times`` times."""
        if times:
            self.lease_extensions.inc(times)
