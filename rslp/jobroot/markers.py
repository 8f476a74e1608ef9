"""Marker names and their ranking: the one place that spells ``<task_id>.<state>.json`` or parses it.

States are ``running`` (a worker started it), ``failed`` (the last failed attempt and
why), ``dead`` (dead-lettered, with the reason) and ``done`` (its outputs are durable;
it records the downstream tasks so a redelivered duplicate can republish them without
running again). A task's state is the most final marker it has: done > dead > failed >
running. The worker writes markers through :class:`rslp.jobroot.JobRoot`; every reader
(the worker's done check, ``rslp status``, fleet sizing, the dashboard) parses the names
of a step's listing with :func:`parse_marker_name` and ranks them with :func:`keep_most_final`.
"""

from __future__ import annotations

STATES = ("running", "failed", "dead", "done")
#: Later states win when a task has several markers.
_RANK = {state: i for i, state in enumerate(STATES)}
_SUFFIX = ".json"


def check_state(state: str) -> str:
    """``state`` if it is a marker state, else ValueError."""
    if state not in _RANK:
        raise ValueError(f"unknown marker state {state!r}; expected one of {STATES}")
    return state


def marker_name(task_id: str, state: str) -> str:
    """The file name of ``task_id``'s ``state`` marker."""
    return f"{task_id}.{check_state(state)}{_SUFFIX}"


def parse_marker_name(name: str) -> tuple[str, str] | None:
    """``(task_id, state)`` of a marker's file name; None for anything else (a marker being written, a stray file)."""
    if name.startswith("."):  # a marker being written (storage's hidden temporary sibling)
        return None
    task_id, _, rest = name.partition(".")
    state = rest.removesuffix(_SUFFIX)
    return (task_id, state) if state in _RANK else None


def keep_most_final(states: dict[str, str], task_id: str, state: str) -> None:
    """Record ``state`` for ``task_id`` in ``states`` unless it already has a more final one."""
    known = states.get(task_id)
    if known is None or _RANK[state] > _RANK[known]:
        states[task_id] = state
