"""Every error a user or an operator can act on, and the exit code each one ends a command with.

:class:`RslpError` is the root: each subtype carries its :class:`ExitCode`, so both
command lines (``rslp``, :mod:`rslp.cli`; ``python -m rslp.main``) catch the root once
and end with that code (:func:`run_command`), and a new error type needs no new branch
anywhere.

A :class:`PermanentError` will fail the same way on every attempt (an unknown
workflow, arguments that do not parse, input that is wrong), so the worker
dead-letters it at once instead of spending the retry budget. Any other exception is
treated as transient and retried with backoff.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from enum import IntEnum
from typing import TYPE_CHECKING, Any, ClassVar

from rslp.console import terminal_line
from rslp.text import clip

if TYPE_CHECKING:
    from pydantic import ValidationError


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


class RslpError(Exception):
    """The root of rslp's errors: its message is one line a user can act on; ``exit_code`` ends the command."""

    exit_code: ClassVar[ExitCode] = ExitCode.USAGE


class PermanentError(RslpError):
    """Retrying cannot help; dead-letter the task with this message as the reason."""


class UnknownWorkflowError(PermanentError):
    """The message names a project or workflow that is not registered."""


class BadArgsError(PermanentError):
    """The task's args do not parse for the workflow's signature."""


class QueueResourceError(RslpError):
    """A queue, topic or subscription is missing or forbidden (NOT_FOUND, PERMISSION_DENIED).

    Not a task's fault, so never dead-lettered: the command or worker stops at once
    with :attr:`ExitCode.PERMANENT_QUEUE_ERROR` and this message, which names the
    resource and the command that creates it.
    """

    exit_code = ExitCode.PERMANENT_QUEUE_ERROR


class Interrupted(RslpError):
    """A command stopped by Ctrl-C; the message says what was done and how to finish (one line)."""

    exit_code = ExitCode.INTERRUPTED


#: Errors from outside rslp that a command line still reports in one line as bad input
#: (a file that is not there, a value that does not parse, pydantic's ValidationError).
USAGE_ERRORS: tuple[type[Exception], ...] = (FileNotFoundError, ValueError)
#: Every error a command reports in one line; anything else is a bug and keeps its traceback.
REPORTED: tuple[type[Exception], ...] = (RslpError, *USAGE_ERRORS)


def exit_code_of(error: BaseException) -> ExitCode | None:
    """The exit code a command ends with for ``error``; None for a bug (its traceback is the report)."""
    if isinstance(error, RslpError):
        return error.exit_code
    if isinstance(error, USAGE_ERRORS):
        return ExitCode.USAGE
    return None


def run_command(prog: str, call: Callable[[], object]) -> int:
    """Run one command and return its exit code; an error a user can act on is one line on stderr.

    ``prog`` prefixes that line (``rslp worker: error: ...``); a command that returns an
    :class:`ExitCode` ends with it, any other result with 0.
    """
    prefix = f"{prog}: " if prog else ""
    try:
        result = call()
        sys.stdout.flush()  # inside the try: a reader that stopped early (| head) is not an error
    except Interrupted as e:  # Ctrl-C where the command knows what it had done
        print(f"{prefix}{' '.join(str(e).split())}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:
        # The reader has what it wanted; point stdout at /dev/null so the exit flush is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK
    except REPORTED as e:
        print(f"{prefix}error: {terminal_line(message(e))}", file=sys.stderr)
        return exit_code_of(e) or ExitCode.USAGE
    return int(result) if isinstance(result, ExitCode) else ExitCode.OK


def typed(error: BaseException, limit: int = 300) -> str:
    """A caught error as reasons and logs name it, ``Type: message``: one line, secrets hidden, at most ``limit``.

    The one way to report an exception by what it is and what it says (a dead letter's
    reason, a log's ``error`` field, the cause inside a longer line).
    """
    return clip(f"{type(error).__name__}: {str(error) or '(no message)'}", limit)


def one_line(error: BaseException | str, limit: int | None = 300) -> str:
    """An error's message on one line, at most ``limit`` characters (its type's name if it has none)."""
    text = " ".join(str(error).split())
    if not text and isinstance(error, BaseException):
        text = type(error).__name__
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


def message(error: BaseException) -> str:
    """What a command prints for ``error``: its message, or a pydantic error as :func:`describe` words it."""
    from pydantic import ValidationError  # loaded already wherever one was raised

    return describe(error) if isinstance(error, ValidationError) else str(error)


#: A pydantic error lists at most this many problems: a hostile input may hold thousands.
MAX_LISTED = 5


def describe(error: ValidationError, schema: str = "", plain: Mapping[str, str] | None = None, within: str = "") -> str:
    """A pydantic error as one line, ``field: reason; ...`` (the reason alone for a model's own checks).

    At most :data:`MAX_LISTED` problems are named, fields the model does not have are
    counted (``schema`` names what they are not part of), and values are never quoted:
    they may be long, or come from a message. ``plain`` words an error type in the
    caller's terms (``{"string_pattern_mismatch": "not a valid id"}``). ``within`` is where
    the validated part sits in a larger document (``partitioner.init_args``): each field is
    named from there.
    """
    words = {"missing": "required field is missing", **(plain or {})}
    problems = error.errors()
    unknown = [p for p in problems if p["type"] in _UNKNOWN]
    others = [p for p in problems if p["type"] not in _UNKNOWN]
    parts = []
    for problem in others[:MAX_LISTED]:
        where = _where(problem, within)
        reason = words.get(problem["type"]) or clip(str(problem["msg"]).removeprefix("Value error, "), 200)
        parts.append(f"{where}: {reason}" if where else reason)
    if len(others) > MAX_LISTED:
        parts.append(f"and {len(others) - MAX_LISTED} more errors")
    outside = f" (not part of {schema})" if schema else ""
    if len(unknown) == 1:
        parts.append(f"{_where(unknown[0], within)}: unknown field{outside}")
    elif unknown:
        parts.append(f"{len(unknown)} unknown fields{outside}, e.g. {_where(unknown[0], within)!r}")
    return "; ".join(parts)


#: Pydantic's error types for a field the model does not have (a model's field; a function's keyword).
_UNKNOWN = ("extra_forbidden", "unexpected_keyword_argument")


def _where(problem: Any, within: str = "") -> str:
    """Where in the input a pydantic problem is, at most 60 characters (field names may come from a message)."""
    return ".".join([*([within] if within else []), *(str(part) for part in problem["loc"])])[:60]
