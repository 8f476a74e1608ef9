"""Command-line words, tidied before a parser sees them.

jsonargparse builds the ``rslp`` subcommands and the registered workflows from
function signatures, and reads a ``bool`` parameter as an option that needs a value
(``--watch true``). Users write ``--watch`` and ``--dry_run`` bare, as every other
tool takes them, so a bare boolean flag gets its ``true`` here. Unknown commands get
the closest known one suggested, so a typo costs one line, not a usage screen; so do
an unknown flag and a missing required one (named as it is typed: ``--job_root``).
"""

from __future__ import annotations

import difflib
import inspect
import typing
from collections.abc import Callable, Iterable
from typing import Any

#: What may follow a boolean flag as its value; anything else means the flag stood bare.
BOOLEAN_WORDS = {"true", "false", "yes", "no"}


def boolean_flags(fn: Callable[..., Any]) -> set[str]:
    """``--name`` for each parameter of ``fn`` typed ``bool`` (or ``bool | None``)."""
    try:
        hints = typing.get_type_hints(fn)
    except (NameError, TypeError):  # an annotation only importable under TYPE_CHECKING
        hints = {n: p.annotation for n, p in inspect.signature(fn).parameters.items()}
    return {f"--{name}" for name, hint in hints.items() if hint in (bool, bool | None, "bool", "bool | None")}


def bare_booleans(fn: Callable[..., Any], args: list[str]) -> list[str]:
    """``--watch`` -> ``--watch true`` for ``fn``'s boolean flags given without a value."""
    flags = boolean_flags(fn)
    out: list[str] = []
    for i, word in enumerate(args):
        out.append(word)
        following = args[i + 1] if i + 1 < len(args) else None
        if word in flags and (following is None or following.lower() not in BOOLEAN_WORDS):
            out.append("true")
    return out


def unknown_command(words: list[str], commands: Iterable[str]) -> str:
    """One line for a command that does not exist, with the closest known one."""
    known = list(commands)
    groups = {name.split()[0] for name in known if " " in name}
    n = 2 if words[0] in groups and len(words) > 1 and not words[1].startswith("-") else 1
    given = " ".join(words[:n])
    close = difflib.get_close_matches(given, known, n=1, cutoff=0.5)
    hint = f"did you mean 'rslp {close[0]}'? " if close else ""
    return f"rslp: unknown command '{given}'; {hint}(rslp --help lists them)"


def flag_problem(fn: Callable[..., Any], args: list[str], positional: bool = False) -> str | None:
    """One line for an unknown flag (with the closest known one) or a missing required flag; None if neither.

    ``args`` have their flags normalized (``--job_root``); ``positional``: the command
    takes its required parameters as positional arguments, which are not flags.
    """
    if "-h" in args or "--help" in args:
        return None
    params = inspect.signature(fn).parameters
    known = [f"--{name}" for name in params]
    given = {a.partition("=")[0] for a in args if a.startswith("--")}
    for flag in sorted(given - set(known)):
        close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}? " if close else ""
        return f"unknown flag {flag}; {hint}(--help lists them)"
    if not positional:
        missing = [
            f"--{n}" for n, p in params.items() if p.default is inspect.Parameter.empty and f"--{n}" not in given
        ]
        if missing:
            return f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required (--help lists every flag)"
    return None
