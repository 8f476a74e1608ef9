"""``python -m rslp.main PROJECT WORKFLOW ARGS...``: run one registered workflow (ancestor-compatible).

The args are parsed for the workflow function's signature, so this runs exactly what a
queue message ``{"project": PROJECT, "workflow": WORKFLOW, "args": [ARGS...]}`` runs.
"""

from __future__ import annotations

import sys

from rslp import log, registry
from rslp.errors import ExitCode, PermanentError
from rslp.launch import FleetError


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[0] in ("-h", "--help"):
        workflows = "\n".join(f"  {p}: {', '.join(w)}" for p, w in registry.projects().items())
        print(f"usage: python -m rslp.main PROJECT WORKFLOW [ARGS...]\n\nregistered workflows:\n{workflows}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    log.setup()
    project, workflow, args = argv[0], argv[1], argv[2:]
    try:
        result = registry.get(project, workflow).run(args)
    except (PermanentError, FleetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return ExitCode.USAGE
    # `common worker` returns its exit code (ExitCode); other workflows return data or None.
    return int(result) if isinstance(result, ExitCode) else ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
