"""Text that comes from data (messages, job roots, configs) on its way to a reason or a log.

Two rules, each in one place: a reason is one line of bounded size (:func:`clip`), and
a resolved secret never appears in one (:func:`keep_secret`, :func:`redact`). What a
terminal needs on top (no control characters) is :mod:`rslp.console`'s.
"""

from __future__ import annotations

import re

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
