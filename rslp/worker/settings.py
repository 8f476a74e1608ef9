"""How a worker behaves: one model, and the command line is made from it.

:class:`WorkerSettings` is the only place a worker's settings are named. ``rslp
worker`` and the ancestor's ``python -m rslp.main common worker`` take its fields as
their flags (:mod:`rslp.argv` turns a model parameter into flags), ``rslp launch``
checks a fleet's worker flags with it, and :func:`worker_command` writes the command
line that starts one. Durations are in seconds.

The ancestor's flags (``--project_id``, ``--subscription_id``,
``--manage_scratch_dir_on_data_disk``) are fields too, folded into the worker's own
(``queue``, ``subscriptions``, ``scratch_root``) when the settings are read. Lists are
given comma-separated on the command line (``--subscription a,b``), and three of them
default to an environment variable, so an image can set them once.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from rslp.trust import Trust
from rslp.worker.guard import JOB_ROOTS_ENV, job_roots_from
from rslp.worker.lease import DEFAULT_LEASE_SECONDS

#: Where ``--manage_scratch_dir_on_data_disk true`` puts task scratch: the ancestor's
#: folder on the host's /data disk, which Beaker mounts and which on some machines is
#: much bigger than the container's own disk.
DATA_DISK_SCRATCH = "/data/rslearn_projects/scratch"

#: The console script and subcommand a worker runs.
WORKER_COMMAND = ("rslp", "worker")


def _comma_separated(value: Any) -> Any:
    """``"a,b"`` (as typed on a command line) -> ``["a", "b"]``; a list stays as it is."""
    return [p.strip() for p in value.split(",") if p.strip()] if isinstance(value, str) else value


#: A list of names, given on the command line as ``a,b``.
Names = Annotated[list[str], BeforeValidator(_comma_separated)]


class WorkerSettings(BaseModel):
    """How a worker behaves. Durations are in seconds."""

    model_config = ConfigDict(extra="forbid")

    project_id: str | None = Field(None, description="the ancestor's flag: same as --queue pubsub://PROJECT_ID")
    subscription_id: str | None = Field(None, description="the ancestor's flag: a subscription to pull first")
    queue: str = Field("", description="pubsub://PROJECT_ID or local://PATH.db")
    subscriptions: Names = Field(
        default_factory=list,
        validation_alias="subscription",
        description="subscriptions to pull from, comma-separated, most preferred first",
    )
    idle_timeout: float = Field(10.0, description="exit after this many seconds with nothing to do (<= 0: never)")
    retries: int = Field(
        3,
        ge=0,
        description="after this many consecutive failed tasks, check the worker's own health and exit if it is "
        "unwell (with --exit_on_failures: exit at once, the ancestor's contract)",
    )
    retry_sleep: float = Field(10.0, ge=0, description="backoff before a failed task's first retry (doubles each time)")
    max_attempts: int = Field(3, ge=1, description="runs per task before it is dead-lettered")
    lease_seconds: float = Field(
        DEFAULT_LEASE_SECONDS,
        ge=1,
        le=600,
        description="lease length, extended every third of it while the task runs; how soon the task of a worker "
        "that died outright runs again (Pub/Sub's minimum is 10)",
    )
    max_lease: float = Field(24 * 3600.0, gt=0, description="no task holds its lease longer than this")
    time_limit: float | None = Field(
        None, gt=0, description="per-task time limit; the smallest of this, the workflow's and the task's wins"
    )
    grace_seconds: float = Field(
        0.0, ge=0, description="on SIGTERM, let the running task finish if it does within this"
    )
    scratch_root: str | None = Field(
        None, description="where per-task scratch directories go (each deleted after its task)"
    )
    worker_id: str | None = Field(
        None, description="name in logs and markers (default: $RSLP_WORKER_NAME or the host, plus the pid)"
    )
    flush_messages: bool = Field(False, description="ack every message without running it, then exit")
    metrics_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="serve Prometheus metrics (tasks by outcome, task durations, lease extensions) on this port",
    )
    metrics_address: str = Field(
        "127.0.0.1", description="the metrics server's address (0.0.0.0 serves every interface)"
    )
    job_roots: Names = Field(
        default_factory=lambda: list(job_roots_from(None)),
        description=f"job-root prefixes a message may name, comma-separated, e.g. gs://bucket/jobs "
        f"(default: ${JOB_ROOTS_ENV}; unset, local paths only)",
    )
    max_delay: float = Field(3600.0, gt=0, description="dead-letter a task whose not_before is further away than this")
    cloud_patience: float = Field(
        300.0, gt=0, description="ride out transient queue errors this long, then exit with code 5"
    )
    publish_patience: float = Field(600.0, gt=0, description="keep retrying a failing publish this long")
    poll_interval: float = Field(0.05, gt=0, description="sleep between empty pulls (grows to 1 s)")
    manage_scratch_dir_on_data_disk: bool = Field(
        False,
        description=f"the ancestor's flag: put task scratch on the /data disk ({DATA_DISK_SCRATCH}) unless "
        "--scratch_root is given",
    )
    allow_diagnostics: bool = Field(
        False,
        description="run the diagnostics that write files, fail or hold the worker (write_file, sleep, fail, "
        "crash, spin, chain) from messages; noop always runs",
    )
    exit_on_failures: bool = Field(
        False, description="exit 3 after --retries consecutive failed tasks, whatever failed them"
    )
    trusted_checkpoints: Names = Field(
        default_factory=lambda: list(Trust.from_flags().checkpoints),
        description="checkpoint locations whose files may be fully unpickled, comma-separated "
        "(default: $RSLP_TRUSTED_CHECKPOINTS); others load as weights only",
    )
    class_prefixes: Names = Field(
        default_factory=lambda: list(Trust.from_flags().class_prefixes),
        description="module prefixes config class paths may name besides rslearn, rslp and torch.nn, "
        "comma-separated (default: $RSLP_CLASS_PREFIXES)",
    )

    @model_validator(mode="before")
    @classmethod
    def _ancestor_flags(cls, data: Any) -> Any:
        """Fold the ancestor's flags into the worker's own: the queue, the first subscription, the scratch disk."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if not data.get("queue"):
            if not data.get("project_id"):
                raise ValueError("give --queue pubsub://PROJECT or local://PATH.db, or --project_id")
            data["queue"] = f"pubsub://{data['project_id']}"
        subscriptions = _comma_separated(data.get("subscription") or [])
        if data.get("subscription_id"):
            subscriptions = [data["subscription_id"], *subscriptions]
        if not subscriptions:
            raise ValueError("give --subscription (or the ancestor's --subscription_id)")
        data["subscription"] = subscriptions
        data["scratch_root"] = scratch_root_for(
            data.get("scratch_root"), bool(data.get("manage_scratch_dir_on_data_disk"))
        )
        return data

    def trust(self) -> Trust:
        """What the operator trusts: checkpoints to unpickle, module prefixes configs may name."""
        return Trust(tuple(self.trusted_checkpoints), tuple(self.class_prefixes))


def scratch_root_for(scratch_root: str | None, manage_scratch_dir_on_data_disk: bool) -> str | None:
    """The worker's scratch root: the one given, else the data disk if asked, else the worker's default.

    The ancestor symlinked one shared /tmp/scratch onto /data and deleted it on SIGTERM;
    this worker already gives each task its own scratch dir (``$RSLP_SCRATCH_DIR``, also
    Python's tempdir) and deletes it after the task and on preemption, so the flag only
    chooses the disk.
    """
    if scratch_root is None and manage_scratch_dir_on_data_disk:
        return DATA_DISK_SCRATCH
    return scratch_root


def flag_names() -> set[str]:
    """The names :class:`WorkerSettings` reads, as the command line spells them (``subscription``)."""
    return {
        field.validation_alias if isinstance(field.validation_alias, str) else name
        for name, field in WorkerSettings.model_fields.items()
    }


def worker_command(settings: dict[str, Any], extra: list[str] | None = None, here: bool = False) -> list[str]:
    """The command line of a worker with these settings (flag name -> value; None leaves the worker's default).

    ``here``: run it with this interpreter (``python -m rslp.cli worker``), as local
    workers do; otherwise with the console script, as a container does. ``extra``
    words are appended as given.
    """
    if unknown := sorted(set(settings) - flag_names()):
        raise ValueError(f"not worker settings: {', '.join(unknown)}")
    command = [sys.executable, "-m", "rslp.cli", WORKER_COMMAND[1]] if here else list(WORKER_COMMAND)
    for flag, value in settings.items():
        if value is not None:
            command += [f"--{flag}", _flag_value(value)]
    return command + list(extra or [])


def _flag_value(value: Any) -> str:
    """A value as the worker's command line reads it: lists comma-separated, whole floats without ``.0``.

    Other floats are written in full (``repr``: the shortest text that reads back as the
    same float); ``:g`` would keep six digits and round ``--max_lease 1234567.5``.
    """
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)
