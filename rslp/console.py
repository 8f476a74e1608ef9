"""What goes to a terminal: aligned tables, short durations, and text made inert for printing.

Console concerns live here, reason concerns in :mod:`rslp.text`. The split is by where
the text goes: a reason (a dead letter's attribute, a marker's error, a log field) must
be one bounded line with no secret in it wherever it is stored or shown, so clipping and
redacting are :mod:`rslp.text`'s; escaping control characters matters only where a
terminal interprets them (``rslp status``, ``rslp dlq``, the console log, an error line),
so :func:`printable`, :func:`terminal_line`, :func:`table` and :func:`duration` are here.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from rslp.text import clip


def printable(text: str) -> str:
    r"""``text`` with every control and format character but newline escaped (``\x1b``, ``\u202e``).

    Reasons, job ids and attributes come from messages and job roots: printed raw, an
    escape sequence could move the cursor, fake a line, or write the clipboard (OSC 52).
    """
    return "".join(ch if ch == "\n" or not unicodedata.category(ch).startswith("C") else ascii(ch)[1:-1] for ch in text)


def terminal_line(text: str) -> str:
    """An error or reason on its way to a terminal: :func:`rslp.text.clip`, then :func:`printable`.

    Errors quote what they were given (paths, ids, a config's values), which may come
    from a job root or a message.
    """
    return printable(clip(text))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], align: str) -> str:
    """Plain aligned columns; ``align`` has one letter per column, ``l`` or ``r``; control characters escaped."""
    cells = [[printable(str(c)).replace("\n", "\\n") for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align, strict=True)).rstrip()
        for row in cells
    )


def duration(seconds: float | None) -> str:
    """``45s``, ``12m03s``, ``3h12m``, ``2d03h``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"
