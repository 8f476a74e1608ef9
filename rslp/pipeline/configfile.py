"""Reading one config file that a pipeline names: safely, with ``${VAR}``, and with errors in one line.

Every error is a :class:`ConfigError`: one line that names the file and the field and
says what was expected, because the same message ends up as a dead-letter reason.
``${VAR}`` is replaced in string values only (after parsing, so a value can never
break the syntax); an unset variable is an error, never "" as in rslearn, where an
unset ``src_dir`` silently becomes the current directory. Only ``${CONFIG_DIR}`` and
names starting with :data:`VAR_PREFIX` are substituted (a worker's environment holds
its secrets), and a resolved value is remembered as a secret, never echoed in an
error. Files are read bounded (:mod:`rslp.storage`: never a FIFO, never unbounded), and
YAML aliases are refused: a 377-byte alias bomb expands to a million values.

What the files mean is :mod:`rslp.pipeline.config`'s; this module only reads them.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
from collections.abc import Mapping
from typing import Any

import yaml
from upath import UPath

from rslp import storage
from rslp.errors import PermanentError
from rslp.storage import JobFileError
from rslp.text import keep_secret, redact

#: Environment variables a config may name; others are refused.
VAR_PREFIX = "RSLP_"

_VAR = re.compile(r"\$\{([^}]*)\}")


class ConfigError(PermanentError):
    """A config file is wrong; the message names the file and field in one line (resolved values hidden)."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


def substitute(value: Any, source: str, variables: Mapping[str, str], where: str = "", keep_env: bool = False) -> Any:
    """Replace ``${VAR}`` in every string of a parsed config: ``variables``, then ``RSLP_*`` env vars.

    With ``keep_env``, an environment variable is checked (allowed and set) but left as
    ``${NAME}``, for a file that rslearn reads and resolves itself.
    """
    if isinstance(value, dict):
        return {
            k: substitute(v, source, variables, f"{where}.{k}" if where else str(k), keep_env) for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            substitute(v, source, variables, f"{where}.{i}" if where else str(i), keep_env) for i, v in enumerate(value)
        ]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in variables:
            return variables[name]
        at = f"{source}: {where or 'value'}: ${{{name[:60]}}}"
        if not name.startswith(VAR_PREFIX):
            raise ConfigError(
                f"{at} is not allowed: configs may use ${{CONFIG_DIR}} and {VAR_PREFIX}* variables only "
                "(data sources read their own credentials from the environment)"
            )
        found = os.environ.get(name)
        if found is None:
            raise ConfigError(f'{at} is not set (export it; unset is not "")')
        keep_secret(found)
        return match.group(0) if keep_env else found

    return _VAR.sub(replace, value)


class _NoAliasLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses aliases (``*name``, ``<<: *name``): no expansion bombs."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"aliases are not allowed (*{event.anchor}); write the value out", event.start_mark
            )
        return super().compose_node(parent, index)


def load_yaml(text: str) -> Any:
    """Parse YAML safely and without aliases.

    The parse is kept per process by the text itself: every task of a job reads the same
    pipeline.yaml, and the pure-Python loader (needed for the alias check) takes about
    10 ms on it. Keyed by content, a changed file is parsed anew; each caller gets its
    own copy to change.
    """
    return copy.deepcopy(_parse_yaml(text))


@functools.lru_cache(maxsize=16)
def _parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_NoAliasLoader)  # a SafeLoader: never builds Python objects


def read_structured(path: UPath, referrer: str, parse: Any) -> Any:
    """``path`` read (bounded) and parsed with ``parse``; ConfigError naming ``referrer`` or the file on failure."""
    return parse_structured(read_config_text(path, referrer), path, parse)


def read_config_text(path: UPath, referrer: str) -> str:
    """The text of a config file in a job root: bounded, never a FIFO; ConfigError naming ``referrer`` if unreadable."""
    try:
        return storage.read_text(path, storage.CONFIG_LIMIT)
    except FileNotFoundError:
        raise ConfigError(f"{referrer}: {path} does not exist") from None
    except JobFileError as e:
        raise ConfigError(f"{referrer}: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None


def parse_structured(text: str, path: UPath, parse: Any) -> Any:
    """``text`` of ``path`` parsed with ``parse`` (``json.loads`` or :func:`load_yaml`); ConfigError naming the line."""
    try:
        return parse(text)
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: line {e.lineno} column {e.colno}: not valid JSON ({e.msg})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"line {mark.line + 1}: " if mark else ""
        raise ConfigError(f"{path}: {at}not valid YAML ({getattr(e, 'problem', e)})") from None


def env_names(text: str) -> list[str]:
    """The ``${RSLP_*}`` names ``text`` refers to, in order (what a substitution of it depends on)."""
    return [name for name in _VAR.findall(text) if name.startswith(VAR_PREFIX)]
