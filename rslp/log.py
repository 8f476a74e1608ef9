"""structlog, configured once per process.

JSON lines when stderr is not a terminal (Beaker, CI, log collectors), a readable
console format when it is. Context such as ``worker_id`` and the current task's ids
is bound with :func:`bind` / structlog's contextvars and appears on every line.
The ``google`` logger gets a handler too: creating a Pub/Sub client sets
``propagate=False`` on it, which would otherwise swallow its warnings.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog

from rslp.text import printable

_configured = False


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
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger("google").addHandler(handler)


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
