"""Paths built from a message or a job root's contents, proven to lie under their root.

Ids from a message (task id, step, partition) become path components: a marker is
``markers/<step>/<task_id>.<state>.json`` and a scratch directory
``<scratch_root>/<task_id>``, which is deleted after the task. A component such as
``..`` or ``/etc`` would reach outside the root, so every such path is built here,
from components that are checked one by one, and the result is checked again against
its root (invariant 7: no field of a message becomes a path outside its root).

Never build a path from an id with ``/`` or ``joinpath`` elsewhere.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TypeVar

from upath import UPath

from rslp.errors import PermanentError
from rslp.storage import is_local

#: An id that is safe as one path component: starts with a letter or digit (so never
#: ``.`` or ``..``), then letters, digits, ``_``, ``-`` and ``.``; no separators.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
_ID = re.compile(ID_PATTERN)

P = TypeVar("P", Path, UPath)


class PathEscapeError(PermanentError):
    """A path built from a message or job root would lie outside its root."""


def check_id(value: str, field: str) -> str:
    """``value`` if it is a safe single path component, else PathEscapeError naming ``field``."""
    if not _ID.fullmatch(value):
        raise PathEscapeError(
            f"{field} {value[:80]!r} is not a valid id (letters, digits, '_', '-', '.'; "
            "starting with a letter or digit; at most 128 characters)"
        )
    return value


def under(root: P, *components: str) -> P:
    """``root / c1 / c2 ...`` after proving each component is one safe name and the result is below ``root``.

    On local disk the proof is made after resolving symlinks: whoever can write a job
    root can make ``markers`` a symlink, and markers were once written outside the root
    through one. (Object stores have no symlinks.)
    """
    for c in components:
        check_id(c, "path component")
    path = root.joinpath(*components)
    base = _normal(root)
    if os.path.commonpath([base, _normal(path)]) != base:
        raise PathEscapeError(f"{path} is not under {root}")
    if is_local(root):
        _no_symlink_out(_normal(root), components, path)
    return path


def _no_symlink_out(base: str, components: tuple[str, ...], path: Path | UPath) -> None:
    """PathEscapeError if a symlink among ``components`` (below ``base``) leads out of ``base``.

    Only the components below the root can take a path out of it (the root itself may be
    a link: it is the root), so each of them is looked at (one ``lstat``) and only a link
    is resolved: a marker's path costs three stats, not one per folder from ``/`` down.
    """
    current = base
    for c in components:
        current = os.path.join(current, c)
        if os.path.islink(current):
            real_base, real = os.path.realpath(base), os.path.realpath(current)
            if os.path.commonpath([real_base, real]) != real_base:
                raise PathEscapeError(f"{path} leads out of {base} through a symlink (to {real})")


def lies_under(path: str, prefix: str) -> bool:
    """Whether ``path`` is ``prefix`` or below it: the same protocol, whole path components.

    On local disk both are resolved first (a symlink may point out); elsewhere a ``..``
    component never counts as inside.
    """
    target, base = UPath(path), UPath(prefix)
    local = is_local(target)
    if local != is_local(base) or (not local and target.protocol != base.protocol):
        return False
    if local:
        inner, outer = os.path.realpath(target.path), os.path.realpath(base.path)
    elif ".." in target.path.split("/"):
        return False
    else:
        inner, outer = target.path.rstrip("/"), base.path.rstrip("/")
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")


def _normal(p: Path | UPath) -> str:
    text = p.path if isinstance(p, UPath) else str(p)
    return os.path.normpath(text or "/")
