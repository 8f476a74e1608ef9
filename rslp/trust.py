"""What the operator trusts: given by a worker's flags or the operator's environment, never by data.

Whoever can publish to a topic, or write a job root, chooses every message and every
file there: pipeline.yaml, dataset.json, model.yaml, the checkpoint. Two things in
those files could run code, so the trust for them comes from here only:

- **Checkpoints.** ``torch.load`` unpickles; a full unpickle runs whatever the file
  holds. A checkpoint loads with ``weights_only=True`` unless it lies under a location
  the operator trusts (``rslp worker --trusted_checkpoints PREFIX,...`` or
  ``$RSLP_TRUSTED_CHECKPOINTS``). No field of a config can widen that.
- **Class paths.** A config names its parts by ``class_path``; importing a module runs
  its top level, so a class path is imported only under a module prefix the operator
  allows: :data:`BUILTIN_CLASS_PREFIXES`, plus ``--class_prefixes`` or
  ``$RSLP_CLASS_PREFIXES``. The check happens before anything is imported, in rslp's
  own builder and before rslearn's parser sees a config.

A worker decides its :class:`Trust` once from its flags and hands it to its task
process (:func:`configure`); commands run by the operator take it from the environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rslp.paths import lies_under

#: Comma-separated checkpoint locations whose files may be fully unpickled.
TRUSTED_CHECKPOINTS_ENV = "RSLP_TRUSTED_CHECKPOINTS"
#: Comma-separated module prefixes config class paths may name, besides the built-in ones.
CLASS_PREFIXES_ENV = "RSLP_CLASS_PREFIXES"
#: Always allowed: rslearn's and rslp's own classes, and torch's layers (rslearn model configs name them).
BUILTIN_CLASS_PREFIXES = ("rslearn", "rslp", "torch.nn")
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _split(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


@dataclass(frozen=True)
class Trust:
    """Checkpoint locations that may be fully unpickled, and extra module prefixes for class paths."""

    checkpoints: tuple[str, ...] = ()
    class_prefixes: tuple[str, ...] = ()

    @classmethod
    def from_flags(cls, checkpoints: str | None = None, class_prefixes: str | None = None) -> Trust:
        """Each comma-separated flag, else its environment variable."""
        return cls(
            checkpoints=_split(checkpoints if checkpoints is not None else os.environ.get(TRUSTED_CHECKPOINTS_ENV, "")),
            class_prefixes=_split(
                class_prefixes if class_prefixes is not None else os.environ.get(CLASS_PREFIXES_ENV, "")
            ),
        )

    def trusts_checkpoint(self, path: str) -> bool:
        """Whether the checkpoint at ``path`` lies under a trusted location (symlinks resolved on local disk)."""
        return any(lies_under(path, prefix) for prefix in self.checkpoints)

    def class_path_refusal(self, class_path: str) -> str | None:
        """Why ``class_path`` may not be imported, or None if it may.

        A bare class name (no dot) imports nothing: rslearn's parser resolves it among the
        subclasses already loaded.
        """
        if not _DOTTED.fullmatch(class_path):
            return f"{class_path[:200]!r} is not a dotted Python name"
        if "." not in class_path:
            return None
        allowed = (*BUILTIN_CLASS_PREFIXES, *self.class_prefixes)
        if any(class_path == p or class_path.startswith(p.rstrip(".") + ".") for p in allowed):
            return None
        return (
            f"{class_path[:200]} is not under a module prefix this worker allows ({', '.join(allowed)}); "
            f"the operator can allow more with --class_prefixes or ${CLASS_PREFIXES_ENV}"
        )


_current: Trust | None = None


def configure(trust: Trust | None) -> None:
    """Set this process's trust (the worker does, in its task process, from its flags); None: the environment's."""
    global _current
    _current = trust


def current() -> Trust:
    """The trust of this process: as configured, else from the environment."""
    return _current if _current is not None else Trust.from_flags()


def class_paths(value: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """Every ``class_path`` string in a parsed config, with the dotted field that holds it."""
    if isinstance(value, dict):
        for key, inner in value.items():
            at = f"{where}.{key}" if where else str(key)
            if key == "class_path" and isinstance(inner, str):
                yield at, inner
            else:
                yield from class_paths(inner, at)
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from class_paths(inner, f"{where}.{i}" if where else str(i))
