"""Pub/Sub's message limits, kept on both backends so the embedded queue cannot hide a breach.

A message's data is at most 10 MB; it has at most 100 attributes, each key at most
256 bytes and each value at most 1024 bytes, counted in UTF-8 bytes, not characters.
The service refuses a message past any of them with INVALID_ARGUMENT, which is a
permanent error: so oversized tasks are refused where they are made (write-jobs, in
one line naming the task), and attributes rslp writes itself are cut to fit.
"""

from __future__ import annotations

MAX_DATA_BYTES = 10_000_000
MAX_ATTRIBUTES = 100
MAX_KEY_BYTES = 256
MAX_VALUE_BYTES = 1024


class MessageTooLargeError(ValueError):
    """A task whose message Pub/Sub would refuse: over :data:`MAX_DATA_BYTES` (:func:`rslp.queue.base.encode_task`)."""


def cut_utf8(value: str, limit: int = MAX_VALUE_BYTES) -> str:
    """``value`` cut to at most ``limit`` UTF-8 bytes, never inside a character."""
    data = value.encode()
    return value if len(data) <= limit else data[:limit].decode(errors="ignore")


def fit_attributes(copied: dict[str, str], own: dict[str, str]) -> dict[str, str]:
    """``copied`` attributes plus ``own`` (which win), cut to Pub/Sub's limits.

    Where there are too many, copied attributes are dropped (in their order) before any
    of ``own``: a dead letter's reason matters more than what the message carried.
    """
    keep = max(0, MAX_ATTRIBUTES - len(own))
    merged = dict(list((k, v) for k, v in copied.items() if k not in own)[:keep])
    merged.update(own)
    return {cut_utf8(k, MAX_KEY_BYTES): cut_utf8(v) for k, v in list(merged.items())[:MAX_ATTRIBUTES]}
