"""The worker and the small pieces it composes.

- :mod:`~rslp.worker.loop`: the loop and one task's life (start here).
- :mod:`~rslp.worker.settings`: the one model of a worker's settings, and its command line.
- :mod:`~rslp.worker.runner`: runs tasks in a long-lived child process; time limits.
- :mod:`~rslp.worker.lease`: keeps the lease alive while a task runs.
- :mod:`~rslp.worker.retry`: attempts and backoff.
- :mod:`~rslp.worker.shutdown`: SIGTERM / SIGINT as a flag (preemption).
"""

from rslp.worker.loop import Worker, run_worker
from rslp.worker.settings import WorkerSettings

__all__ = ["Worker", "WorkerSettings", "run_worker"]
