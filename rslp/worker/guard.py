"""What a worker lets a message do: the checks between decoding a task and running it.

A message is data (invariant 7). Whoever can publish to a topic chooses every field
of a message, and whoever can write a job root chooses its manifest and markers. So
before a task runs, :func:`admit` proves that:

- its workflow is registered *and* marked runnable from a message (the fleet's own
  commands run only from the command line), and if it is a diagnostic that writes,
  fails or holds the worker, the operator allowed diagnostics (``--allow_diagnostics``);
- its ``not_before`` is within the worker's ceiling (a far-future one would park the
  message forever and keep ``rslp run`` restarting workers for it);
- its job root lies under the prefixes the worker accepts (``--job_roots`` or
  ``$RSLP_JOB_ROOTS``; by default local paths only), and is a job root whose manifest
  names this job and this step;
- a pipeline task is exactly the task ``write_jobs`` would have made (its args name its
  own job root and partition), and no other workflow carries a pipeline step's name, so
  only pipeline tasks write pipeline markers;
- a done marker's recorded downstream tasks go only to the job's own topics, for the
  same job.

Every refusal is a :class:`Rejected` with a one-line reason; the worker dead-letters
the message and does not count it toward its failure streak, because the message's
content caused it, not the worker's health. This module never touches the queue.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from upath import UPath

from rslp import registry
from rslp.errors import PermanentError, UnknownWorkflowError, typed
from rslp.jobroot import JOB_PARTITION, JobManifest, JobRoot, JobRootError, partition_index
from rslp.paths import PathEscapeError, lies_under
from rslp.storage import is_local
from rslp.task import Downstream, Task
from rslp.text import clip
from rslp.weather import Weather
from rslp.worker.runner import Outcome

#: Comma-separated job-root prefixes a worker accepts, when ``--job_roots`` is not given.
JOB_ROOTS_ENV = "RSLP_JOB_ROOTS"


class Rejected(PermanentError):
    """The message may not run here; ``reason`` says why in one line, ``kind`` names the check."""

    def __init__(self, reason: str, kind: str = "rejected") -> None:
        super().__init__(clip(reason))
        self.reason = clip(reason)
        self.kind = kind


@dataclass(frozen=True)
class Admitted:
    """A task that may run: its workflow, its job's ledger and topics, and what its done marker recorded (if done)."""

    workflow: registry.Workflow
    ledger: JobRoot | None
    done_downstream: list[Downstream] | None
    topics: frozenset[str] = frozenset()
    manifest: JobManifest | None = None


def admit(
    task: Task, job_roots: Iterable[str] = (), weather: Weather | None = None, allow_diagnostics: bool = False
) -> Admitted:
    """Check everything a message chooses before its task runs; raise :class:`Rejected` if anything is wrong."""
    workflow = _workflow(task, allow_diagnostics)
    if task.job_root is None:
        return Admitted(workflow, None, None)
    root = check_job_root(task.job_root, job_roots)
    ledger, manifest = _open_job(root, weather)
    _check_job_task(task, manifest)
    topics = frozenset(manifest.topics.values())
    return Admitted(workflow, ledger, _recorded_downstream(task, ledger, manifest), topics, manifest)


def check_downstream(
    task: Task, outcome: Outcome, topics: Iterable[str], manifest: JobManifest | None = None
) -> Outcome:
    """``outcome``, or a permanent failure if it asks to publish outside ``topics`` or outside the job.

    A workflow's downstream can follow its arguments (``chain`` takes a topic), so a
    message could otherwise make the worker publish, with its credentials, to another
    fleet's topic. ``topics``: the job's own, or for a task without a job the topic it
    came from; ``manifest``: the task's job, if it has one.
    """
    for d in outcome.downstream:
        if (reason := downstream_refusal(task, d, set(topics), manifest)) is not None:
            return Outcome("permanent", reason=clip(reason), duration=outcome.duration)
    return outcome


def downstream_refusal(task: Task, d: Downstream, topics: set[str], manifest: JobManifest | None) -> str | None:
    """Why ``task`` may not publish ``d`` (None if it may), whether its run asked for it or its done marker recorded it.

    Always: only to ``topics`` and never for another job. A pipeline task's downstream
    is more: exactly a pipeline task of the same job and root, for one of the job's
    steps and partitions, on that step's topic (so a done marker that whoever writes
    the job root forged cannot run a diagnostic, or a task outside the job).
    """
    if d.topic not in topics:
        allowed = ", ".join(sorted(topics))[:300]
        return f"downstream topic {d.topic[:100]!r} is not one of this task's topics ({allowed})"
    down = d.task
    if (down.job_id or down.job_root) and (down.job_id, down.job_root) != (task.job_id, task.job_root):
        return "a downstream task belongs to another job"
    if task.project != "pipeline" or manifest is None:
        return None
    step, partition = down.step or "", down.partition or ""
    expected = ["--job_root", task.job_root, "--partition", partition]
    if down.project != "pipeline" or down.job_id is None or down.workflow != step or down.args != expected:
        return f"a downstream of {task.name} must be a pipeline task of job {manifest.job_id}, not {down.name}"
    if (refusal := partition_refusal(manifest, step, partition)) is not None:
        return f"a downstream task: {refusal}"
    if d.topic != manifest.topics.get(step):
        return f"a downstream {step} task goes to that step's topic, not {d.topic[:100]!r}"
    return None


def partition_refusal(manifest: JobManifest, step: str, partition: str) -> str | None:
    """Why ``partition`` of ``step`` is not one of the job's tasks (None if it is).

    A per-partition step's partition is ``p<index>`` below the header's count, a
    per-job step's is :data:`~rslp.jobroot.JOB_PARTITION`. Checked before anything is
    written: markers of partitions a job does not have once made autoscale stop a
    fleet whose job was far from done.
    """
    if step in manifest.job_steps:
        if partition != JOB_PARTITION:
            return f"{step} is a per-job step of job {manifest.job_id}: its partition is {JOB_PARTITION!r}"
        return None
    if step not in manifest.steps:
        return f"step {step[:100]!r} is not a step of job {manifest.job_id} ({', '.join(manifest.steps)})"[:400]
    try:
        index = partition_index(partition)
    except ValueError as e:
        return f"{e} of job {manifest.job_id}"
    if index >= manifest.partition_count:
        return f"job {manifest.job_id} has no partition {partition!r} (it has {manifest.partition_count})"
    return None


def delay(task: Task, max_delay: float) -> float:
    """Seconds until ``task`` may run (0 if now); Rejected past ``max_delay`` seconds from now."""
    if task.not_before is None:
        return 0.0
    wait = (task.not_before - datetime.now(UTC)).total_seconds()
    if wait > max_delay:
        raise Rejected(
            f"not_before {task.not_before.isoformat()} is {wait:.0f}s away, past this worker's ceiling of "
            f"{max_delay:g}s (--max_delay)"
        )
    return max(0.0, wait)


def time_limit(task: Task, workflow: registry.Workflow, *limits: float | None) -> float | None:
    """The smallest of the task's, the workflow's and the worker's limits: a message cannot raise the operator's."""
    given = [x for x in (task.time_limit, workflow.time_limit, *limits) if x]
    return min(given) if given else None


def job_roots_from(flag: str | None) -> tuple[str, ...]:
    """The accepted job-root prefixes: the comma-separated flag, else ``$RSLP_JOB_ROOTS``."""
    text = flag if flag is not None else os.environ.get(JOB_ROOTS_ENV, "")
    return tuple(p.strip() for p in text.split(",") if p.strip())


def check_job_root(job_root: str, prefixes: Iterable[str]) -> UPath:
    """``job_root`` as a UPath if it lies under one of ``prefixes`` (none given: local disk only)."""
    try:
        root = UPath(job_root)
    except (ValueError, TypeError) as e:  # unknown protocol
        raise Rejected(f"job_root {job_root[:200]!r}: {e}") from None
    if ".." in root.path.split("/"):
        raise Rejected(f"job_root {job_root[:200]!r}: '..' is not allowed in a job root")
    prefixes = list(prefixes)
    if not prefixes:
        if is_local(root):
            return root
        raise Rejected(
            f"job_root {job_root[:200]!r}: this worker accepts local job roots only; "
            f"give --job_roots (or ${JOB_ROOTS_ENV}) to accept {root.protocol}:// roots"
        )
    if any(lies_under(job_root, p) for p in prefixes):
        return root
    raise Rejected(f"job_root {job_root[:200]!r} is not under this worker's job roots ({', '.join(prefixes)[:300]})")


def _workflow(task: Task, allow_diagnostics: bool) -> registry.Workflow:
    try:
        workflow = registry.get(task.project, task.workflow)
    except UnknownWorkflowError as e:
        raise Rejected(str(e), kind="unknown_workflow") from None
    if not workflow.from_message:
        raise Rejected(f"{task.name} runs only from the command line, never from a queue message", kind="cli_only")
    if workflow.diagnostic and not allow_diagnostics:
        raise Rejected(
            f"{task.name} is a diagnostic (it writes files, fails or holds the worker): this worker runs "
            "diagnostics from messages only if its operator starts it with --allow_diagnostics",
            kind="diagnostic_refused",
        )
    pipeline_steps = registry.projects().get("pipeline", [])
    if task.project == "pipeline":
        if task.job_root is None or task.step != task.workflow:
            raise Rejected(f"{task.name}: a pipeline task needs job_id, job_root, partition and step {task.workflow!r}")
        expected = ["--job_root", task.job_root, "--partition", task.partition]
        if task.args != expected:
            raise Rejected(
                f"{task.name}: a pipeline task's args must be exactly "
                "--job_root JOB_ROOT --partition PARTITION of its own job"
            )
    elif task.step in pipeline_steps:
        raise Rejected(f"step {task.step!r} is a pipeline step: only pipeline/{task.step} tasks may carry it")
    return workflow


def _open_job(root: UPath, weather: Weather | None = None) -> tuple[JobRoot, JobManifest]:
    """The job's ledger and manifest header; Rejected if the root is not a readable job root."""
    ledger = JobRoot(str(root), weather=weather)
    try:
        return ledger, ledger.read_manifest()
    except (ConnectionError, TimeoutError):
        raise  # the network, not the message: handed back and counted as the worker's failure
    except PermanentError as e:  # the ledger's one line on a manifest that does not parse
        raise Rejected(clip(f"job_root {str(root)[:200]}: {e}")) from None
    except (OSError, ValueError) as e:
        raise Rejected(f"job_root {str(root)[:200]}: cannot read its manifest ({typed(e)})") from None


def _check_job_task(task: Task, manifest: JobManifest) -> None:
    if task.job_id != manifest.job_id:
        raise Rejected(f"job_id {task.job_id!r} is not the job at {task.job_root} ({manifest.job_id!r})")
    steps = [*manifest.steps, *manifest.job_steps]
    if task.step not in steps:
        raise Rejected(f"step {task.step!r} is not a step of job {manifest.job_id} ({', '.join(steps)})")
    if (refusal := partition_refusal(manifest, task.step, task.partition or "")) is not None:
        raise Rejected(refusal, kind="not_in_job")


def _recorded_downstream(task: Task, ledger: JobRoot, manifest: JobManifest) -> list[Downstream] | None:
    """What ``task``'s done marker recorded, proved to stay inside the job; None if not done."""
    try:
        recorded = ledger.done_downstream(task)
    except (ConnectionError, TimeoutError):
        raise
    except (OSError, ValueError, TypeError, AttributeError, RecursionError, PathEscapeError, JobRootError) as e:
        raise Rejected(f"done marker of task {task.task_id} does not parse ({e.__class__.__name__})") from None
    if recorded is None:
        return None
    topics = set(manifest.topics.values())
    for d in recorded:
        if (refusal := downstream_refusal(task, d, topics, manifest)) is not None:
            raise Rejected(f"done marker of task {task.task_id} records what it may not publish: {refusal}")
    return recorded
