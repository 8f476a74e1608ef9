"""Error types the worker tells apart.

A :class:`PermanentError` will fail the same way on every attempt (an unknown
workflow, arguments that do not parse, input that is wrong), so the worker
dead-letters it at once instead of spending the retry budget. Any other exception is
treated as transient and retried with backoff.
"""


class PermanentError(Exception):
    """Retrying cannot help; dead-letter the task with this message as the reason."""


class UnknownWorkflowError(PermanentError):
    """The message names a project or workflow that is not registered."""


class BadArgsError(PermanentError):
    """The task's args do not parse for the workflow's signature."""
