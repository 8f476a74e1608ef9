"""The ``rslp`` console script: one subcommand for everything a user does.

Each subcommand is a typed, documented function elsewhere in the package; this module
only maps names to them and builds a jsonargparse parser from the chosen function's
signature and docstring, so ``rslp SUBCOMMAND --help`` always matches the code.
Only the chosen subcommand's module is imported: ``rslp worker`` starts without
importing torch or rslearn. Flags may be spelled with dashes or underscores
(``--job-root`` or ``--job_root``).
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from typing import Any

from rslp import log
from rslp.argv import add_arguments, call, flag_problem, new_parser, parse_problem, unknown_command
from rslp.console import terminal_line
from rslp.errors import ExitCode, run_command

#: name -> (target "module:function", one-line summary, required params positional?)
COMMANDS: dict[str, tuple[str, str, bool]] = {
    "write-jobs": ("rslp.pipeline.write_jobs:write_jobs", "split a request into tasks and enqueue them", False),
    "rolling": (
        "rslp.pipeline.rolling:rolling",
        "one job per day/week/month under a root; enqueue what is missing",
        False,
    ),
    "run": ("rslp.pipeline.run:run", "run a whole job on this machine (embedded queue, local workers)", False),
    "demo": ("rslp.pipeline.demo:demo", "run the offline demo job end to end", False),
    "worker": ("rslp.common.worker:worker", "pull and run tasks until idle or preempted", False),
    "setup": ("rslp.setup:setup", "create topics, subscriptions and dead-letter topics (idempotent)", False),
    "status": ("rslp.status.command:status", "where a job stands: per-step counts, failures, backlog", False),
    "dashboard": (
        "rslp.dashboard.server:dashboard",
        "a live, read-only page of a job in the browser (prints its URL)",
        False,
    ),
    "dlq list": ("rslp.dlq:dlq_list", "list dead-lettered tasks with their reasons", False),
    "dlq show": ("rslp.dlq:dlq_show", "show one dead-lettered task in full", True),
    "dlq replay": ("rslp.dlq:dlq_replay", "republish dead-lettered tasks after a fix (ids kept)", False),
    "launch": ("rslp.launch.commands:launch", "start N workers on Beaker (--dry_run prints the specs)", False),
    "fleet status": ("rslp.launch.commands:status", "list a fleet's workers and their job status", True),
    "fleet stop": ("rslp.launch.commands:stop", "cancel a fleet's workers", True),
    "fleet autoscale": (
        "rslp.launch.commands:autoscale",
        "keep a job's worker pools sized to its work and deadline",
        True,
    ),
}


def _usage(group: str | None = None) -> str:
    """The list of subcommands; for a group (``dlq``, ``fleet``) only that group's."""
    names = [n for n in COMMANDS if group is None or n.startswith(f"{group} ")]
    width = max(len(n) for n in names)
    lines = [f"  {name:<{width}}  {COMMANDS[name][1]}" for name in names]
    prog = f"rslp {group} SUBCOMMAND" if group else "rslp SUBCOMMAND"
    return f"usage: {prog} [--help] [ARGS...]\n\nsubcommands:\n" + "\n".join(lines)


def _group(argv: list[str]) -> str | None:
    """``dlq`` or ``fleet`` when ``argv`` names a group of subcommands but none of its members."""
    if argv and any(n.startswith(f"{argv[0]} ") for n in COMMANDS):
        return argv[0]
    return None


def _split(argv: list[str]) -> tuple[str | None, list[str]]:
    for words in (2, 1):
        name = " ".join(argv[:words])
        if name in COMMANDS:
            return name, argv[words:]
    return None, argv


def _normalize_flags(args: list[str]) -> list[str]:
    """``--job-root`` -> ``--job_root`` (values are left alone)."""
    out = []
    for a in args:
        if a.startswith("--"):
            flag, eq, value = a.partition("=")
            a = "--" + flag[2:].replace("-", "_") + eq + value
        out.append(a)
    return out


def build_parser(name: str) -> tuple[Any, Callable[..., Any]]:
    """The parser for subcommand ``name`` and the function it calls."""
    target, summary, positional = COMMANDS[name]
    module_name, _, attr = target.partition(":")
    fn = getattr(importlib.import_module(module_name), attr)
    description = (inspect.getdoc(fn) or summary).split("\n\n")[0]
    parser = new_parser(f"rslp {name}", description)
    add_arguments(parser, fn, as_positional=positional)
    return parser, fn


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rslp`` console script; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    name, rest = _split(argv)
    if name is None:
        group = _group(argv)
        asked = argv[1:] if group else argv
        if asked and asked[0] not in ("-h", "--help"):
            print(unknown_command(argv, COMMANDS), file=sys.stderr)
            if group:  # `rslp dlq bogus`: show what the group has
                print(_usage(group))
            return ExitCode.USAGE
        print(_usage(group))
        return ExitCode.OK
    try:
        return _run(name, rest)
    except KeyboardInterrupt:  # Ctrl-C anywhere else: a line, not a traceback
        print(f"rslp {name}: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED


def _run(name: str, rest: list[str]) -> int:
    """Parse ``rest`` for subcommand ``name`` and run it; each error a user can act on is one line."""
    import jsonargparse

    log.setup()
    parser, fn = build_parser(name)
    args = _normalize_flags(rest)
    if problem := flag_problem(fn, args, COMMANDS[name][2]):
        print(f"rslp {name}: {problem}", file=sys.stderr)
        return ExitCode.USAGE
    try:
        values = parser.parse_args(args).as_dict()
    except jsonargparse.ArgumentError as e:  # a value that does not parse: one line, as a flag mistake
        print(f"rslp {name}: error: {terminal_line(parse_problem(e))}", file=sys.stderr)
        return ExitCode.USAGE
    return run_command(f"rslp {name}", lambda: call(fn, values))


if __name__ == "__main__":
    sys.exit(main())
