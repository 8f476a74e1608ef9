"""structlog, configured once per process.

JSON lines when stderr is not a terminal (Beaker, CI, log collectors), a readable
console format when it is. Context such as ``worker_id`` and the current task's ids
is bound with :func:`bind` / structlog's contextvars and appears on every line.
The ``google`` logger gets a handler too: creating a Pub/Sub client sets
``propagate=False`` on it, which would otherwise swallow its warnings; google.auth's "no metadata server" warnings
are dropped (every gs:// command off GCP printed two).

Lines go to whatever ``sys.stderr`` is when they are written, so ``rslp run`` can send
a job's logs to a file with ``contextlib.redirect_stderr``. Third-party warnings that
tell a user nothing they can act on (:data:`NOISE`) are dropped, in this process and
in every process it starts.
"""

from __future__ import annotations

import builtins
import logging
import os
import re
import sys
import warnings
from typing import Any

import structlog

from rslp.console import printable

_configured = False

#: (category, module) of warnings that say nothing to a user: a deprecation inside
#: Lightning's own code, and the semaphore that torch's worker pools leave to the
#: resource tracker at exit.
NOISE = (
    ("FutureWarning", "lightning.pytorch.utilities._pytree"),
    ("UserWarning", "multiprocessing.resource_tracker"),
)


class _Stderr:
    """``sys.stderr`` as it is at each write (pytest's capture, a redirect), not as it was at setup."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def quiet_noise() -> None:
    """Drop :data:`NOISE` here, and (through PYTHONWARNINGS) in child processes such as the resource tracker."""
    for category, module in NOISE:
        warnings.filterwarnings("ignore", category=getattr(builtins, category), module=re.escape(module))
    given = [w for w in os.environ.get("PYTHONWARNINGS", "").split(",") if w]
    wanted = [f"ignore::{category}:{module}" for category, module in NOISE]
    os.environ["PYTHONWARNINGS"] = ",".join(given + [w for w in wanted if w not in given])


def setup(level: str | None = None) -> None:
    """Configure structlog and stdlib logging; safe to call more than once."""
    global _configured
    if _configured:
        return
    _configured = True
    level_no = getattr(logging, (level or os.environ.get("RSLP_LOG_LEVEL", "INFO")).upper(), logging.INFO)
    # On a terminal, nothing from a message may reach it raw: the console renderer repr()s
    # values but prints the event and a traceback as they are; JSON escapes everything.
    renderer: list[Any] = (
        [_printable_values, structlog.dev.ConsoleRenderer(colors=False)]
        if sys.stderr.isatty()
        else [structlog.processors.JSONRenderer()]
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            *renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level_no),
        logger_factory=structlog.PrintLoggerFactory(_Stderr()),  # type: ignore[arg-type]  # only write and flush are used
        cache_logger_on_first_use=True,
    )
    quiet_noise()
    handler = logging.StreamHandler(_Stderr())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger("google").addHandler(handler)
    # google.auth warns twice per process that it probed the Compute Engine metadata server and found
    # none (every gs:// command off GCP, and the GCS emulator, which needs no credentials): nothing a
    # user can act on. A call that truly needs credentials fails with its own one-line error.
    logging.getLogger("google.auth._default").setLevel(logging.ERROR)
    logging.getLogger("google.auth.compute_engine._metadata").setLevel(logging.ERROR)


def _printable_values(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    return {k: printable(v) if k in ("event", "exception") and isinstance(v, str) else v for k, v in event.items()}


def get(name: str | None = None, **bound: Any) -> Any:
    """A structlog logger with ``bound`` fields on every line."""
    setup()
    return structlog.get_logger(name).bind(**bound)


def bind(**fields: Any) -> None:
    """Bind fields (worker id, task ids) to every log line of this context."""
    structlog.contextvars.bind_contextvars(**fields)


def unbind(*names: str) -> None:
    """Remove fields bound with :func:`bind`."""
    structlog.contextvars.unbind_contextvars(*names)
