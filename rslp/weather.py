"""A cloud's bad minutes are weather: retry what passes, stop at once on what will not.

Every queue and storage call of the fleet goes through :meth:`Weather.call`. It
tells errors apart by kind, not by where they came from:

- *Retryable* (UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED, INTERNAL, UNKNOWN,
  RESOURCE_EXHAUSTED, a credentials refresh or transport failure, a dropped
  connection, HTTP 408/429/5xx from storage): retried with jittered exponential
  backoff for ``patience`` seconds. A fleet of a hundred workers sees these daily; none
  of them is a reason for a worker to die. Past ``patience`` the call raises
  :class:`CloudUnavailableError` (exit code 5), one line saying what kept failing.
- *Permanent* (NOT_FOUND, PERMISSION_DENIED, INVALID_ARGUMENT, UNAUTHENTICATED):
  raised at once as :class:`CloudRefusedError` (exit code 4), one line naming the
  resource and the IAM role the call needs, because waiting cannot create a topic or
  grant a role.
- Anything else passes through untouched: a bad job root in a message is the
  message's problem, and the worker dead-letters it rather than exiting.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from rslp import log
from rslp.errors import ExitCode, QueueResourceError, RslpError, one_line

T = TypeVar("T")

#: HTTP statuses of storage errors (gcsfs) that pass with time.
RETRYABLE_HTTP = frozenset({408, 429, 500, 502, 503, 504})

# The IAM roles each kind of call needs, named in permanent errors and in the README.
SUBSCRIBER = "roles/pubsub.subscriber"
PUBLISHER = "roles/pubsub.publisher"
EDITOR = "roles/pubsub.editor"
STORAGE = "roles/storage.objectUser"


class CloudError(RslpError):
    """A queue or storage call that the worker cannot get past; ``exit_code`` says how it ends."""

    exit_code = ExitCode.CRASH


class CloudUnavailableError(CloudError):
    """Retryable errors went on past the patience window."""

    exit_code = ExitCode.UNAVAILABLE


class CloudRefusedError(CloudError, QueueResourceError):
    """NOT_FOUND, PERMISSION_DENIED or INVALID_ARGUMENT: a missing resource or role."""

    exit_code = ExitCode.PERMANENT_QUEUE_ERROR


def _kinds() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(retryable, permanent) error types, from the Google libraries this process has loaded.

    Looked up, not imported: an embedded-queue worker never loads gRPC (importing it
    here would add half a second to its start), and an error of a library that is not
    loaded cannot occur.
    """
    retryable: list[type[BaseException]] = [ConnectionError, TimeoutError]
    permanent: list[type[BaseException]] = []
    if (api := sys.modules.get("google.api_core.exceptions")) is not None:
        retryable += [
            api.ServiceUnavailable,
            api.DeadlineExceeded,
            api.Aborted,
            api.InternalServerError,
            api.Unknown,
            api.ResourceExhausted,
            api.GatewayTimeout,
            api.BadGateway,
        ]
        permanent += [api.NotFound, api.Forbidden, api.BadRequest, api.Unauthorized]
    if (auth := sys.modules.get("google.auth.exceptions")) is not None:
        retryable += [auth.RefreshError, auth.TransportError]
    return tuple(retryable), tuple(permanent)


def is_permanent(error: BaseException) -> bool:
    """True for NOT_FOUND, PERMISSION_DENIED, INVALID_ARGUMENT and UNAUTHENTICATED."""
    return isinstance(error, _kinds()[1])


def is_retryable(error: BaseException) -> bool:
    """True for errors that pass with time (see the module docstring)."""
    retryable, permanent = _kinds()
    if isinstance(error, permanent):
        return False
    if isinstance(error, retryable):
        return True
    return getattr(error, "code", None) in RETRYABLE_HTTP  # gcsfs HttpError and kin


@dataclass(frozen=True)
class Weather:
    """Retry policy for cloud calls: backoff from ``first_wait`` up to ``max_wait``, for ``patience`` seconds."""

    patience: float = 300.0
    first_wait: float = 0.5
    max_wait: float = 30.0
    #: Set on preemption: stop waiting at once, so a worker leaves within Beaker's grace period.
    interrupt: threading.Event | None = None

    def call(self, fn: Callable[[], T], *, what: str, resource: str, role: str | None = None) -> T:
        """Run ``fn`` (a call that does ``what`` on ``resource``), riding out transient errors.

        ``role`` is the IAM role the call needs: a permanent error names it.
        """
        interrupt = self.interrupt or threading.Event()
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_retryable),
            wait=tenacity.wait_random_exponential(multiplier=self.first_wait, max=self.max_wait),
            stop=tenacity.stop_after_delay(self.patience) | tenacity.stop_when_event_set(interrupt),
            sleep=functools.partial(_nap, interrupt),
            before_sleep=lambda state: _log_retry(what, resource, state),
            reraise=True,
        )
        try:
            return retrying(fn)
        except Exception as e:
            said = _described(e)
            if is_permanent(e):
                need = f"; it needs {role} on it" if role else ""
                raise CloudRefusedError(f"{what} {resource}: {said}{need}") from e
            if is_retryable(e):
                raise CloudUnavailableError(
                    f"{what} {resource}: still failing after {self.patience:g}s of retries: {said}"
                ) from e
            raise


def _nap(interrupt: threading.Event, seconds: float) -> None:
    """Back off for ``seconds``, waking at once on ``interrupt`` (the retry then stops)."""
    interrupt.wait(seconds)


def _log_retry(what: str, resource: str, state: tenacity.RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.get("rslp.weather").warning(
        "cloud_retry",
        call=what,
        resource=resource,
        attempt=state.attempt_number,
        wait=round(state.upcoming_sleep, 2),
        error=_described(error) if error else "",
    )


def _described(error: BaseException) -> str:
    """``KIND: what it said`` in one line: a Google error's status name and message, else the class and text.

    A Google error's ``str`` repeats its status: its ``message`` alone is what it said.
    """
    grpc = getattr(error, "grpc_status_code", None)
    kind = grpc.name if grpc is not None else error.__class__.__name__
    return f"{kind}: {one_line(getattr(error, 'message', None) or error)}"
