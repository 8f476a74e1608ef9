"""Command lines built from typed functions: one parser for ``rslp`` and the ancestor's workflows.

jsonargparse builds the parser from a function's signature and docstring. Two rules
are added here, in one place:

- A parameter marked :data:`Flags` (a pydantic model) is given whole (:func:`call`
  builds it), and its fields are the command's flags, flat: ``rslp worker --queue URL``
  fills ``WorkerSettings.queue``. So a setting is named once, in its model.
- A boolean flag works bare (``--watch``, ``--dry_run``), as every other tool takes
  it, or with a value (``--watch false``); jsonargparse's own boolean type reads the value.

Unknown commands get the closest known one suggested, so a typo costs one line, not a
usage screen; so do an unknown flag and a missing required one (named as it is typed:
``--job_root``). ``--help`` shows a constrained type as a user reads it (``int >= 0``),
not as Python spells it (``Annotated[int, Ge(ge=0)]``, a validator's function address).
"""

from __future__ import annotations

import difflib
import functools
import inspect
import re
import types
import typing
from collections.abc import Callable, Iterable
from typing import Annotated, Any, TypeVar


class _GivenWhole:
    """The mark of :data:`Flags`."""


_GIVEN_WHOLE = _GivenWhole()
_Model = TypeVar("_Model")

#: ``settings: Flags[WorkerSettings]``: a parameter given whole, whose model's fields are the command's flags.
Flags = Annotated[_Model, _GIVEN_WHOLE]


#: annotated_types' bounds (pydantic's ``Field(ge=...)``) and how ``--help`` writes them.
_BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def new_parser(prog: str, description: str | None) -> Any:
    """A jsonargparse parser for one command: errors raised (the caller words them), types in words in its help."""
    import jsonargparse

    return jsonargparse.ArgumentParser(
        prog=prog, description=description, exit_on_error=False, formatter_class=_help_formatter()
    )


@functools.cache
def _help_formatter() -> type:
    """The help formatter of jsonargparse, with :func:`readable_type` for constrained types (built on first use)."""
    import jsonargparse

    class HelpFormatter(jsonargparse.DefaultHelpFormatter):
        def _get_type_str(self, action: Any) -> str | None:  # jsonargparse's hook for "(type: ...)"
            return readable_type(getattr(action, "_typehint", None)) or super()._get_type_str(action)

    return HelpFormatter


def readable_type(hint: Any) -> str | None:
    """``Annotated[float, Ge(ge=1), Le(le=600)]`` -> ``float >= 1, <= 600``; None for a type that is not annotated.

    Validators (a function that reads ``a,b`` as a list) are left out: the flag's
    description says how to write its value. An optional one ends ``| null``, as
    jsonargparse writes other optional types.
    """
    hint, optional = _without_none(hint)
    if typing.get_origin(hint) is not Annotated:
        return None
    base, *metadata = typing.get_args(hint)
    base, base_optional = _without_none(base)
    name = str(base).replace("typing.", "") if typing.get_args(base) or not isinstance(base, type) else base.__name__
    bounds = ", ".join(f"{sign} {getattr(m, k):g}" for m in metadata for k, sign in _BOUNDS.items() if hasattr(m, k))
    return f"{name} {bounds}".strip() + (" | null" if optional or base_optional else "")


def _without_none(hint: Any) -> tuple[Any, bool]:
    """``X | None`` -> ``(X, True)``; any other type -> ``(it, False)``."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
        return next(a for a in args if a is not type(None)), True
    return hint, False


def models(fn: Callable[..., Any]) -> dict[str, Any]:
    """``fn``'s parameters marked :data:`Flags`, by name, with their model (a pydantic model class)."""
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except (NameError, TypeError):  # an annotation importable only under TYPE_CHECKING: no model is given whole
        return {}
    found = {}
    for name, hint in hints.items():
        if typing.get_origin(hint) is Annotated and _GIVEN_WHOLE in hint.__metadata__:
            found[name] = typing.get_args(hint)[0]
    return found


def parameters(fn: Callable[..., Any]) -> list[inspect.Parameter]:
    """``fn``'s parameters as its command line takes them: each model parameter's fields in its place."""
    out: list[inspect.Parameter] = []
    given_whole = models(fn)
    for name, param in inspect.signature(fn).parameters.items():
        if name in given_whole:
            out += inspect.signature(given_whole[name]).parameters.values()
        else:
            out.append(param)
    return out


def add_arguments(
    parser: Any, fn: Callable[..., Any], as_positional: bool = False, skip: set[str] | None = None
) -> None:
    """Add ``fn``'s flags to ``parser`` (jsonargparse): its parameters but ``skip``, models' fields, bare booleans."""
    given_whole = models(fn)
    parser.add_function_arguments(
        fn, as_positional=as_positional, fail_untyped=False, skip=set(given_whole) | (skip or set())
    )
    for model in given_whole.values():
        parser.add_class_arguments(model, nested_key=None, fail_untyped=False)
    booleans = {p.name for p in parameters(fn) if p.annotation in (bool, bool | None, "bool", "bool | None")}
    for action in parser._actions:  # argparse keeps no public list; a bare flag takes its const
        if action.dest in booleans:
            action.nargs, action.const = "?", True


def call(fn: Callable[..., Any], values: dict[str, Any]) -> Any:
    """Call ``fn`` with parsed ``values``, each model parameter built whole from its fields.

    A model that does not validate raises pydantic's ValidationError, a ValueError:
    the command line reports it in one line (:func:`rslp.errors.run_command`).
    """
    kwargs = {k: v for k, v in values.items() if k != "__path__"}
    for name, model in models(fn).items():
        fields = [p.name for p in inspect.signature(model).parameters.values()]
        kwargs[name] = model.model_validate({f: kwargs.pop(f) for f in fields if f in kwargs})
    return fn(**kwargs)


def parse_problem(error: Exception) -> str:
    """Jsonargparse's error for a value that does not parse, as one line naming the flag as typed."""
    text = re.sub(r'^Parser key "([^"]+)":', r"--\1:", str(error))
    text = re.sub(r"\d+ validation errors? for \S+|\[type=[^\]]*\]|For further information visit \S+", "", text)
    text = re.sub(r"<class '(\w+)'>", r"\1", text)
    return " ".join(re.sub(r"\.?\s*Got value: ", "; got ", text).split())


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
    params = parameters(fn)
    known = [f"--{p.name}" for p in params]
    given = {a.partition("=")[0] for a in args if a.startswith("--")}
    for flag in sorted(given - set(known)):
        close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}? " if close else ""
        return f"unknown flag {flag}; {hint}(--help lists them)"
    if not positional:
        missing = [f"--{p.name}" for p in params if p.default is inspect.Parameter.empty and f"--{p.name}" not in given]
        if missing:
            return f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required (--help lists every flag)"
    return None
