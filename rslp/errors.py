"""Error types the worker tells apart.

A :class:`PermanentError` will fail the same way on every attempt (an unknown
workflow, arguments that do not parse, input that is wrong), so the worker
dead-letters it at once instead of spending the retry budget. Any other exception is
treated as transient and retried with backoff.
"""

import re
from enum import IntEnum


class PermanentError(Exception):
    """Retrying cannot help; dead-letter the task with this message as the reason."""


class UnknownWorkflowError(PermanentError):
    """The message names a project or workflow that is not registered."""


class BadArgsError(PermanentError):
    """The task's args do not parse for the workflow's signature."""


class ExitCode(IntEnum):
    """How a worker (and every ``rslp`` command) ends; Beaker shows it as the job's exit code.

    Zero only when nothing is wrong: a drained queue and a handled preemption are
    successes, so Beaker does not mark a fleet that did its job as failed.
    """

    OK = 0  #: idle exit, handled preemption, flush finished
    CRASH = 1  #: an uncaught exception in the worker itself (Python's own code)
    USAGE = 2  #: bad command line, config or request: fix the input and rerun
    TOO_MANY_FAILURES = 3  #: ``--retries`` consecutive tasks failed: look at the dead letters
    PERMANENT_QUEUE_ERROR = 4  #: a topic, subscription or bucket is missing or forbidden (NOT_FOUND, PERMISSION_DENIED)
    UNAVAILABLE = 5  #: the queue or storage kept failing with retryable errors past the retry window


#: Dead-letter reasons are at most this many characters: a reason is built from a
#: message's content, and a 4 MB message must not become a 4 MB log line or attribute.
REASON_LIMIT = 1000


#: Values that must never appear in a reason or a log line (resolved ``${VAR}`` values).
_SECRETS: set[str] = set()


def keep_secret(value: str) -> None:
    """Remember ``value`` so :func:`redact` (and so every reason) hides it."""
    if len(value) >= 4:  # shorter values would blank out ordinary words
        _SECRETS.add(value)


def redact(text: str) -> str:
    """``text`` with every value given to :func:`keep_secret` replaced by ``***`` (whole words only)."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = re.sub(rf"(?<![\w]){re.escape(secret)}(?![\w])", "***", text)
    return text


def clip(text: str, limit: int = REASON_LIMIT) -> str:
    """``text`` on one line, secrets hidden, cut to ``limit`` characters with a note of how much was cut."""
    line = " ".join(redact(text).split())
    if len(line) <= limit:
        return line
    kept = limit - 40  # room for the note, whose number has at most 20 digits
    return f"{line[:kept]}... ({len(line) - kept} more characters)"
