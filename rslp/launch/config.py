"""What a fleet is: one validated model, checked before anything reaches Beaker.

A :class:`LaunchConfig` holds everything that makes the workers of one launch alike
(image, clusters, resources, mounts, environment) and the arguments of the
``rslp worker`` command each of them runs. It is pure data: it never talks to Beaker,
so a dry run and the tests can build it without a token.

Validation here is about the traps that otherwise surface hours later on a cluster:
a duration without a unit (Beaker reads bare numbers as nanoseconds), an env var that
would shadow the worker's own identity, two mounts on one path.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Priority = Literal["low", "normal", "high", "urgent", "immediate"]
"""Beaker job priorities; fleets default to ``low`` so they only use idle capacity."""

DEFAULT_GCP_CREDENTIALS_PATH = "/etc/rslp/gcp-credentials.json"
"""Where the GCP service-account key is mounted when one is given as a Beaker secret."""

DEFAULT_GCP_CREDENTIALS_SECRET = "RSLEARN_GCP_CREDENTIALS"
"""The Beaker secret mounted by default: the ancestor's name, so existing workspaces keep working."""

# The job learns who it is from these; Beaker injects ids, not the experiment name.
FLEET_ENV = "RSLP_FLEET"
WORKER_NAME_ENV = "RSLP_WORKER_NAME"
LAUNCH_ID_ENV = "RSLP_LAUNCH_ID"
GCP_CREDENTIALS_ENV = "GOOGLE_APPLICATION_CREDENTIALS"
GCP_PROJECT_ENV = "GOOGLE_CLOUD_PROJECT"

_BEAKER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DURATION = re.compile(r"^(\d+(\.\d+)?(h|m|s|ms))+$")
_MEMORY = re.compile(r"^\d+(\.\d+)?\s*([KMGTP]i?B|B)$")


def check_duration(value: str | None) -> str | None:
    """Accept ``"24h"``, ``"90m"``, ``"1h30m"``; refuse bare numbers, which Beaker reads as nanoseconds."""
    if value is None:
        return None
    if not _DURATION.match(value.replace(" ", "")):
        raise ValueError(
            f"duration {value!r} needs a unit, e.g. '24h', '90m' or '1h30m' (Beaker reads bare numbers as nanoseconds)"
        )
    return value.replace(" ", "")


def _split_pair(value: Any, what: str, first: str, second: str) -> Any:
    """Let a mount be written ``"SOURCE:MOUNT_PATH"`` on the command line as well as as a mapping."""
    if not isinstance(value, str):
        return value
    source, sep, mount_path = value.rpartition(":")
    if not sep or not source or not mount_path:
        raise ValueError(f"{what} {value!r} must look like '{first.upper()}:{second.upper()}'")
    return {first: source, second: mount_path}


class Mount(BaseModel):
    """Something mounted into every worker's container at ``mount_path``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mount_path: str

    @field_validator("mount_path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"mount path {value!r} must be absolute")
        return value


class HostPathMount(Mount):
    """A directory of the Beaker node (for example a shared NFS path), ``"HOST_PATH:MOUNT_PATH"``."""

    host_path: str

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return _split_pair(value, "host-path mount", "host_path", "mount_path")


class WekaMount(Mount):
    """A Weka bucket, ``"BUCKET:MOUNT_PATH"``: where datasets and job roots usually live."""

    bucket: str

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return _split_pair(value, "Weka mount", "bucket", "mount_path")


class GcpCredentials(Mount):
    """A GCP service-account key kept as a Beaker secret and mounted as a file.

    Workers need it to reach Pub/Sub and gs:// from Beaker; ``GOOGLE_APPLICATION_CREDENTIALS``
    is set to the mount path so Google's clients find it. The key never enters the image.
    """

    secret: str
    mount_path: str = DEFAULT_GCP_CREDENTIALS_PATH


class WorkerArgs(BaseModel):
    """The arguments of ``rslp worker`` in each container: which queue to pull and when to give up.

    Field names are the worker's flag names (``--queue``, ``--idle_timeout``, ...), so this
    class is the one place that knows them. Unset options are left out so that the
    worker's own defaults apply. The values are checked by the worker's own settings
    model (:class:`rslp.worker.WorkerSettings`), so a launch accepts exactly what the
    workers it starts accept, rather than starting a fleet that exits 2 on arrival.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    queue: str = Field(description="queue URL, e.g. pubsub://PROJECT")
    subscription: str
    idle_timeout: float | None = Field(None, description="seconds without a task before the worker exits")
    retries: int | None = Field(None, description="consecutive failures before the worker exits")
    retry_sleep: float | None = Field(None, description="seconds to wait after a failure")
    extra_args: list[str] = Field(default_factory=list, description="appended verbatim to the worker command")

    @field_validator("queue")
    @classmethod
    def _queue_url(cls, value: str) -> str:
        if not re.match(r"^[a-z][a-z0-9+.-]*://.+", value):
            raise ValueError(f"queue {value!r} must be a URL such as 'pubsub://PROJECT'")
        return value

    @model_validator(mode="after")
    def _as_the_worker_reads_them(self) -> WorkerArgs:
        from rslp.errors import describe
        from rslp.worker.settings import WorkerSettings  # the one model of a worker's settings

        try:
            WorkerSettings.model_validate(self.settings())
        except ValidationError as e:
            raise ValueError(f"the worker would refuse this: {describe(e)}") from None
        return self

    def settings(self) -> dict[str, str | int | float]:
        """The worker settings these arguments set (field -> value), the worker's defaults left out."""
        given = {"queue": self.queue, "subscription": self.subscription}
        options = self.model_dump(include={"idle_timeout", "retries", "retry_sleep"}, exclude_none=True)
        return {**given, **options}

    def command(self, worker_id: str) -> list[str]:
        """The full command line of one worker, naming it ``worker_id`` in its logs."""
        from rslp.worker.settings import worker_command

        return worker_command({**self.settings(), "worker_id": worker_id}, extra=self.extra_args)


class LaunchConfig(BaseModel):
    """Everything that makes the workers of one launch alike; see ``rslp launch --help``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fleet: str = Field(description="fleet name: the prefix of every worker's Beaker experiment name")
    image: str = Field(description="Beaker image, e.g. USER/rslp-worker")
    workspace: str | None = Field(None, description="Beaker workspace; default: the Beaker config's default")
    budget: str | None = Field(None, description="Beaker budget, e.g. ai2/my-budget")
    clusters: list[str] = Field(min_length=1, description="Beaker clusters a worker may run on")
    gpus: int = Field(0, ge=0)
    shared_memory: str | None = Field(None, description="e.g. 256GiB; data loaders need more than Docker's 64MiB")
    priority: Priority = "low"
    preemptible: bool = Field(True, description="may be preempted (and is then resumed by Beaker)")
    timeout: str | None = Field(None, description="maximum runtime of a worker, e.g. 24h")
    env: dict[str, str] = Field(default_factory=dict, description="plain environment variables")
    secret_env: dict[str, str] = Field(default_factory=dict, description="env var name -> Beaker secret name")
    gcp_credentials: GcpCredentials | None = None
    gcp_project: str | None = Field(None, description="GOOGLE_CLOUD_PROJECT in every worker")
    host_path_mounts: list[HostPathMount] = Field(default_factory=list)
    weka_mounts: list[WekaMount] = Field(default_factory=list)
    worker: WorkerArgs

    @field_validator("fleet")
    @classmethod
    def _fleet_name(cls, value: str) -> str:
        if not _BEAKER_NAME.match(value):
            raise ValueError(
                f"fleet name {value!r} must be 1-64 letters, digits, '.', '-' or '_', starting with a letter or digit"
            )
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: str | None) -> str | None:
        return check_duration(value)

    @field_validator("shared_memory")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None and not _MEMORY.match(value):
            raise ValueError(f"shared_memory {value!r} must be a size such as '256GiB' or '10GB'")
        return value

    @model_validator(mode="after")
    def _no_collisions(self) -> LaunchConfig:
        reserved = {FLEET_ENV, WORKER_NAME_ENV, LAUNCH_ID_ENV}
        if self.gcp_credentials is not None:
            reserved.add(GCP_CREDENTIALS_ENV)
        if self.gcp_project is not None:
            reserved.add(GCP_PROJECT_ENV)
        names = list(self.env) + list(self.secret_env)
        for name in names:
            if not _ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid environment variable name")
        if clash := sorted(reserved & set(names)):
            raise ValueError(f"env vars {clash} are set by rslp itself; remove them")
        if both := sorted(set(self.env) & set(self.secret_env)):
            raise ValueError(f"env vars {both} are given both as plain and as secret")
        mounts = [m.mount_path for m in self.mounts()]
        if dupes := sorted({p for p in mounts if mounts.count(p) > 1}):
            raise ValueError(f"two mounts on the same path: {dupes}")
        return self

    def mounts(self) -> list[Mount]:
        """All mounts, credentials first, in the order they appear in the spec."""
        first: list[Mount] = [self.gcp_credentials] if self.gcp_credentials else []
        return first + list(self.host_path_mounts) + list(self.weka_mounts)
