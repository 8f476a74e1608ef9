"""Projects and their workflows: the only way a queue message reaches code.

A message names ``project`` and ``workflow``; both are looked up in this table, which
is written in code. Nothing from a message is ever imported by name, so a message can
only run what is registered here (invariant 7).

Targets are ``"module:function"`` strings imported on first use: a worker whose tasks
are diagnostics never imports torch or rslearn, which keeps its cold start short.

Arguments are CLI strings, as in the ancestor: they are parsed against the workflow
function's signature by jsonargparse (required parameters may be positional), so
``python -m rslp.main common write_file /tmp/x abc`` and the message
``{"project": "common", "workflow": "write_file", "args": ["/tmp/x", "abc"]}`` run the
same call. A workflow's parser is built once per process.

A workflow with a ``handler`` takes the task itself: a message runs
``handler(task, header)`` with the envelope's typed fields and the job header the
worker's guard already read, and parses nothing (the pipeline's steps). Its ``target``
is then its command-line form, for running one task by hand: it gets the workflow's
name first, then the parsed args.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rslp import argv
from rslp.errors import BadArgsError, UnknownWorkflowError, one_line
from rslp.task import Task
from rslp.text import clip


@dataclass(frozen=True)
class Workflow:
    """A registered workflow: where its code lives, whether a message may run it, its time limit (seconds).

    ``from_message`` is False for the fleet's own commands (``worker``, ``launch``,
    ``write_jobs``): from a message they would start workers, fleets or jobs with the
    worker's credentials, so they run only from the command line.

    ``diagnostic`` marks the ancestor's smoke-and-fault workflows that write files where
    their arguments say, fail, crash or hold the worker: a message runs them only on a
    worker whose operator allows it (``rslp worker --allow_diagnostics``; the ancestor's
    ``common worker`` trusts its topic and allows them).

    ``defaults`` are this entry point's own defaults for the function's parameters: the
    ancestor's ``common worker`` runs the same function as ``rslp worker`` with the
    ancestor's trust in its topic.

    ``handler`` (``"module:function"``), where set, is what a message runs, with the
    task itself (see the module docstring).
    """

    project: str
    name: str
    target: str
    from_message: bool
    time_limit: float | None = None
    diagnostic: bool = False
    defaults: Mapping[str, Any] = field(default_factory=dict)
    handler: str | None = None

    def function(self) -> Callable[..., Any]:
        """Import and return the workflow function (for a workflow with a handler: its command-line form)."""
        return _load(self.target)

    def parse_args(self, args: list[str]) -> dict[str, Any]:
        """Parse CLI-string args for the function's signature, or raise BadArgsError."""
        import jsonargparse

        fn = self.function()
        parameters = argv.parameters(fn)[1 if self.handler else 0 :]
        # Required parameters are positional unless the args name one as a flag (then all are flags).
        required = {f"--{p.name}" for p in parameters if p.default is p.empty}
        named = any(a.split("=")[0] in required for a in args)
        parser = self._parser(fn, named)
        try:
            namespace = parser.parse_args(_optional_positionals(parameters, args))
        except SystemExit as e:
            if e.code in (0, None):  # --help
                raise
            raise BadArgsError(clip(f"bad args {args!r} for {self.project}/{self.name}")) from None
        except (jsonargparse.ArgumentError, TypeError, ValueError) as e:
            raise BadArgsError(
                clip(f"bad args {args!r} for {self.project}/{self.name}: {one_line(e, limit=None)}")
            ) from None
        return namespace.as_dict()  # type: ignore[no-any-return]

    def _parser(self, fn: Callable[..., Any], named: bool) -> Any:
        """The parser of this workflow's args (required ones as flags if ``named``), built once per process."""
        key = (self.project, self.name, named)
        if (parser := _PARSERS.get(key)) is None:
            parser = argv.new_parser(f"{self.project} {self.name}", fn.__doc__)
            # With a handler, the command-line form's first parameter is the workflow's name, not an arg.
            skip = {next(iter(inspect.signature(fn).parameters))} if self.handler else set()
            argv.add_arguments(parser, fn, as_positional=not named, skip=skip)
            if self.defaults:
                parser.set_defaults(dict(self.defaults))
            _PARSERS[key] = parser
        return parser

    def run(self, args: list[str]) -> Any:
        """Parse ``args`` and call the workflow; returns whatever the workflow returns."""
        values = self.parse_args(args)
        if self.handler:  # the command-line form of a step: its name first
            return self.function()(self.name, **{k: v for k, v in values.items() if k != "__path__"})
        return argv.call(self.function(), values)

    def run_task(self, task: Task, header: Any = None) -> Any:
        """Run what ``task`` asks for: its handler with the task itself, else its CLI-string args parsed.

        ``header``: the job header the worker read to admit the task (None: the handler reads it).
        """
        if self.handler:
            return _load(self.handler)(task, header)
        return self.run(task.args)


#: Each workflow's parsers, built on first use: (project, workflow, required-as-flags) -> parser.
_PARSERS: dict[tuple[str, str, bool], Any] = {}


def _load(target: str) -> Callable[..., Any]:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)  # type: ignore[no-any-return]


def _optional_positionals(params: list[inspect.Parameter], args: list[str]) -> list[str]:
    """Let optional parameters be given positionally too, as in ``sleep 5 /tmp/trace``.

    jsonargparse makes only required parameters positional; leading positional
    strings beyond those are turned into ``--name=value`` for the next parameters in
    signature order.
    """
    n_required = sum(p.default is inspect.Parameter.empty for p in params)
    n_positional = next((i for i, a in enumerate(args) if a.startswith("--")), len(args))
    extra = args[n_required:n_positional]
    optional = params[n_required : n_required + len(extra)]
    if len(extra) > len(optional):
        return args  # let the parser report the unrecognized arguments
    named = [f"--{p.name}={value}" for p, value in zip(optional, extra, strict=True)]
    return args[: min(n_required, n_positional)] + named + args[n_positional:]


_WORKFLOWS: dict[str, dict[str, Workflow]] = {}


def register(
    project: str,
    name: str,
    target: str,
    *,
    from_message: bool,
    time_limit: float | None = None,
    diagnostic: bool = False,
    defaults: Mapping[str, Any] | None = None,
    handler: str | None = None,
) -> None:
    """Register ``project/name`` as ``target`` (``"module:function"``); code only, never messages.

    ``from_message`` must be decided for each workflow: may a queue message run it?
    """
    workflow = Workflow(project, name, target, from_message, time_limit, diagnostic, dict(defaults or {}), handler)
    _WORKFLOWS.setdefault(project, {})[name] = workflow


def get(project: str, name: str) -> Workflow:
    """Look up a workflow, or raise UnknownWorkflowError naming what is registered."""
    if project not in _WORKFLOWS:
        raise UnknownWorkflowError(f"unknown project {project!r}; registered: {sorted(_WORKFLOWS)}")
    workflows = _WORKFLOWS[project]
    if name not in workflows:
        raise UnknownWorkflowError(f"unknown workflow {name!r} in project {project!r}; registered: {sorted(workflows)}")
    return workflows[name]


def message_modules(project: str) -> list[str]:
    """The modules of ``project``'s workflows that a message may run (their handlers' where they have one)."""
    workflows = _WORKFLOWS.get(project, {}).values()
    targets = {w.handler or w.target for w in workflows if w.from_message}
    return sorted({t.partition(":")[0] for t in targets})


def projects() -> dict[str, list[str]]:
    """Every registered project and its workflow names."""
    return {p: sorted(w) for p, w in sorted(_WORKFLOWS.items())}


# The fleet's own commands: CLI only. The ancestor's `common worker` trusted its topic:
# it runs the diagnostics from messages, and --retries failed tasks in a row end it.
register(
    "common",
    "worker",
    "rslp.common.worker:worker",
    from_message=False,
    defaults={"allow_diagnostics": True, "exit_on_failures": True},
)
register("common", "launch", "rslp.common.launch:launch", from_message=False)
# The ancestor's diagnostics: smoke and fault tests of a fleet send them as messages.
# All but noop write, fail, crash or hold the worker: only where the operator allows it.
for _name in ("write_file", "sleep", "fail", "crash", "spin", "chain"):
    register("common", _name, f"rslp.common.diagnostics:{_name}", from_message=True, diagnostic=True)
register("common", "noop", "rslp.common.diagnostics:noop", from_message=True)

# The rslearn batch-inference pipeline (rslp/pipeline/): one workflow per step, each taking its task.
for _step in ("create_windows", "prepare", "ingest", "materialize", "predict", "postprocess", "combine", "observe"):
    register(
        "pipeline", _step, "rslp.pipeline.steps:by_hand", from_message=True, handler="rslp.pipeline.steps:run_task"
    )
register("pipeline", "write_jobs", "rslp.pipeline.write_jobs:write_jobs", from_message=False)
