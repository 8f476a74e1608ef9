"""The commands the CLI prints for a user to run next, spelled so that each runs as printed.

A hint that fails when pasted costs a new user more than no hint: the worker command
that write-jobs printed for a gs:// job root lacked ``--job_roots``, so the worker it
started dead-lettered every task of the job; ``rslp status`` was printed to users whose
``rslp`` was not on PATH (a venv not activated). So every printed command is built here,
from what the command it follows knows: the program as this shell can reach it, and the
flags the next command needs for this job.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

from upath import UPath

from rslp.storage import is_local


def program() -> str:
    """``rslp`` if that name reaches this installation from PATH; else the console script's path.

    The path is relative to the current directory when under it (``.venv/bin/rslp``),
    which is how a user who has not activated the venv can run it.
    """
    script = Path(sys.executable).parent / "rslp"
    if not script.is_file():
        return "rslp"
    found = shutil.which("rslp")
    if found and os.path.realpath(found) == os.path.realpath(script):
        return "rslp"
    here = Path.cwd()
    absolute = script.absolute()
    under = absolute.is_relative_to(here) and here != Path(here.anchor)
    return str(absolute.relative_to(here)) if under else str(absolute)


def command(*words: str) -> str:
    """``rslp WORDS...`` as a shell line for this installation, each word quoted where needed."""
    return " ".join([shlex.quote(program()), *(shlex.quote(w) for w in words)])


def worker_job_roots(job_root: str) -> list[str]:
    """The job-root prefixes a worker needs to accept tasks of ``job_root``: none for local disk.

    For an object-store root, its parent folder (``gs://b/jobs`` for ``gs://b/jobs/j1``):
    the jobs beside it on the same topics stay accepted, and nothing outside that folder is.
    """
    root = UPath(job_root)
    if is_local(root):  # a worker accepts local job roots unless pinned
        return []
    return [str(root.parent).rstrip("/")]


def worker(queue: str, subscriptions: list[str], job_root: str) -> str:
    """The worker command that runs ``job_root``'s tasks from ``subscriptions`` on ``queue``."""
    from rslp.worker.settings import WORKER_COMMAND, worker_command  # the one builder of a worker's command line

    settings = {"queue": queue, "subscription": subscriptions, "job_roots": worker_job_roots(job_root) or None}
    return command(*worker_command(settings)[len(WORKER_COMMAND) - 1 :])


def status(job_root: str, *flags: str) -> str:
    """``rslp status --job_root JOB_ROOT [FLAGS]``."""
    return command("status", "--job_root", job_root, *flags)


def status_root(root: str) -> str:
    """``rslp status --root ROOT``: a rolling root's periods."""
    return command("status", "--root", root)
