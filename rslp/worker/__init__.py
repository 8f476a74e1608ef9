"""The worker and the small pieces it composes.

- :mod:`~rslp.worker.loop`: the loop and one task's life (start here).
- :mod:`~rslp.worker.settings`: the one model of a worker's settings, and its command line.
- :mod:`~rslp.worker.runner`: runs tasks in a long-lived child process; time limits.
- :mod:`~rslp.worker.lease`: keeps the lease alive while a task runs.
- :mod:`~rslp.worker.retry`: attempts and backoff.
- :mod:`~rslp.worker.shutdown`: SIGTERM / SIGINT as a flag (preemption).

The package itself imports none of them: the task process unpickles its entry point
from :mod:`~rslp.worker.runner` and should not pay for the loop and its queue clients.
"""
