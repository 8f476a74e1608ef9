"""``python -m rslp.main PROJECT WORKFLOW ARGS...``: run one registered workflow (ancestor-compatible).

The args are parsed for the workflow function's signature, so this runs exactly what a
queue message ``{"project": PROJECT, "workflow": WORKFLOW, "args": [ARGS...]}`` runs.
"""

from __future__ import annotations

import sys

from rslp import log, registry
from rslp.errors import ExitCode, run_command

HELP = ("-h", "--help")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[0] in HELP or argv[1] in HELP:
        projects = registry.projects()
        if argv and argv[0] in projects:  # `common --help`: that project's workflows
            projects = {argv[0]: projects[argv[0]]}
        workflows = "\n".join(f"  {p}: {', '.join(w)}" for p, w in projects.items())
        print(f"usage: python -m rslp.main PROJECT WORKFLOW [ARGS...]\n\nregistered workflows:\n{workflows}")
        return ExitCode.OK if set(argv[:2]) & set(HELP) else ExitCode.USAGE
    log.setup()
    project, workflow, args = argv[0], argv[1], argv[2:]
    # `common worker` returns its exit code (ExitCode); other workflows return data or None.
    return run_command("", lambda: registry.get(project, workflow).run(args))


if __name__ == "__main__":
    sys.exit(main())
