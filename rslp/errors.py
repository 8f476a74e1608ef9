"""Error types the worker tells apart.

A :class:`PermanentError` will fail the same way on every attempt (an unknown
workflow, arguments that do not parse, input that is wrong), so the worker
dead-letters it at once instead of spending the retry budget. Any other exception is
treated as transient and retried with backoff.
"""

from enum import IntEnum


class PermanentError(Exception):
    """Retrying cannot help; dead-letter the task with this message as the reason."""


class UnknownWorkflowError(PermanentError):
    """The message names a project or workflow that is not registered."""


class BadArgsError(PermanentError):
    """The task's args do not parse for the workflow's signature."""


class QueueResourceError(Exception):
    """A queue, topic or subscription is missing or forbidden (NOT_FOUND, PERMISSION_DENIED).

    Not a task's fault, so never dead-lettered: the command or worker stops at once
    with :attr:`ExitCode.PERMANENT_QUEUE_ERROR` and this message, which names the
    resource and the command that creates it.
    """


class Interrupted(Exception):
    """A command stopped by Ctrl-C; the message says what was done and how to finish (one line)."""


class ExitCode(IntEnum):
    """How a worker (and every ``rslp`` command) ends; Beaker shows it as the job's exit code.

    Zero only when nothing is wrong: a drained queue and a handled preemption are
    successes, so Beaker does not mark a fleet that did its job as failed.
    """

    OK = 0  #: idle exit, handled preemption, flush finished
    CRASH = 1  #: an uncaught exception in the worker itself (Python's own code)
    USAGE = 2  #: bad command line, config or request: fix the input and rerun
    #: the worker is unwell: ``--retries`` tasks failed in a row and then its health check failed
    #: (rslp.worker.health); the ancestor's ``common worker``: ``--retries`` consecutive failed tasks
    TOO_MANY_FAILURES = 3
    PERMANENT_QUEUE_ERROR = 4  #: a topic, subscription or bucket is missing or forbidden (NOT_FOUND, PERMISSION_DENIED)
    UNAVAILABLE = 5  #: the queue or storage kept failing with retryable errors past the retry window
    INTERRUPTED = 130  #: a command stopped by Ctrl-C (the shell's code for SIGINT); rerunning it finishes it
