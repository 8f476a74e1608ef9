"""What makes every worker of a pool alike, as ``rslp launch`` and ``rslp fleet autoscale`` take it.

:class:`PoolSettings` is the one list of those flags: both commands take it whole
(:data:`rslp.argv.Flags`), and :meth:`PoolSettings.config` turns it, with a fleet
name and the subscription its workers pull, into the validated
:class:`~rslp.launch.config.LaunchConfig` a backend launches. A flag is added here
and nowhere else.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rslp.errors import describe
from rslp.launch.config import DEFAULT_GCP_CREDENTIALS_PATH, DEFAULT_GCP_CREDENTIALS_SECRET, LaunchConfig, Priority
from rslp.launch.fleet import FleetError
from rslp.launch.idle import default_idle_timeout
from rslp.worker.guard import JOB_ROOTS_ENV

Backend = Literal["beaker", "local"]
"""Where workers run: Beaker experiments, or processes of this machine (:mod:`rslp.launch.local`)."""

#: Stand-ins for the Beaker-only settings of a local launch: a local worker needs neither.
LOCAL_IMAGE = "local"
LOCAL_CLUSTER = "local"


class PoolSettings(BaseModel):
    """A pool's workers: where they run, with what, and the worker flags they share."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Backend = Field("beaker", description="beaker (experiments on Beaker) or local (processes here)")
    image: str | None = Field(
        None, description="Beaker image with rslp installed (see worker.Dockerfile); not needed with --backend local"
    )
    queue: str | None = Field(
        None,
        description="queue URL, e.g. pubsub://PROJECT (with --job_root, needed unless the job's queue is its own "
        "embedded queue on this machine: a manifest never chooses where workers pull)",
    )
    clusters: list[str] | None = Field(
        None, description="""Beaker clusters a worker may run on, e.g. '["ai2/jupiter"]'; not needed locally"""
    )
    workspace: str | None = Field(None, description="Beaker workspace (default: the Beaker config's default)")
    budget: str | None = Field(None, description="Beaker budget to charge, e.g. ai2/my-budget")
    gpus: int = Field(0, description="GPUs per worker")
    shared_memory: str | None = Field(None, description="shared memory per worker, e.g. 256GiB")
    priority: Priority = Field("low", description="Beaker priority: low, normal, high, urgent or immediate")
    preemptible: bool = Field(True, description="allow preemption; a preempted worker is resumed and pulls again")
    timeout: str | None = Field(None, description="maximum runtime of a worker, with a unit, e.g. 24h")
    env: dict[str, str] | None = Field(
        None, description="""environment variables, e.g. '{"RSLP_LOG_LEVEL": "DEBUG"}'"""
    )
    secret_env: dict[str, str] | None = Field(
        None, description="""env var name -> Beaker secret name, e.g. '{"WANDB_API_KEY": "my-wandb-key"}'"""
    )
    gcp_credentials_secret: str = Field(
        DEFAULT_GCP_CREDENTIALS_SECRET,
        description="Beaker secret holding a GCP service-account key (JSON), mounted in every worker as the file "
        "GOOGLE_APPLICATION_CREDENTIALS names (default: the ancestor's RSLEARN_GCP_CREDENTIALS)",
    )
    gcp_credentials_path: str = Field(DEFAULT_GCP_CREDENTIALS_PATH, description="where that key is mounted")
    no_gcp_credentials: bool = Field(
        False, description="mount no GCP credentials (workers that reach no Google service)"
    )
    gcp_project: str | None = Field(
        None, description="GOOGLE_CLOUD_PROJECT in every worker (default: the project of a pubsub:// queue)"
    )
    host_path_mounts: list[str] | None = Field(None, description="node directories to mount, each HOST_PATH:MOUNT_PATH")
    weka_mounts: list[str] | None = Field(None, description="Weka buckets to mount, each BUCKET:MOUNT_PATH")
    idle_timeout: int | None = Field(
        None,
        description="seconds without a task before a worker exits (default: 1800 with GPUs, 600 without, so a pool "
        "fed by other pools outlasts their gaps; see rslp.launch.idle)",
    )
    retries: int | None = Field(None, description="consecutive task failures before a worker exits (worker default)")
    retry_sleep: float | None = Field(None, description="seconds a worker waits after a failed task (worker default)")
    worker_args: list[str] | None = Field(None, description="more arguments appended to the worker command")
    job_roots: str | None = Field(
        None,
        description=f"the job roots this fleet serves, comma-separated prefixes (e.g. gs://bucket/jobs/JOB); workers "
        f"refuse tasks of any other job root (${JOB_ROOTS_ENV} in each worker)",
    )

    def config(self, fleet: str, subscription: str) -> LaunchConfig:
        """The validated launch config of fleet ``fleet`` pulling ``subscription`` (FleetError naming a bad flag)."""
        image, clusters, no_gcp_credentials = self.image, self.clusters, self.no_gcp_credentials
        idle_timeout = default_idle_timeout(self.gpus) if self.idle_timeout is None else self.idle_timeout
        if self.backend == "local":
            # A local worker uses this machine's own Google credentials: no secret to mount.
            image, clusters, no_gcp_credentials = image or LOCAL_IMAGE, clusters or [LOCAL_CLUSTER], True
        elif not image or not clusters:
            raise FleetError("--image and --clusters are required with the beaker backend (or use --backend local)")
        if self.queue is None:
            raise FleetError("give --queue (e.g. pubsub://PROJECT), or --job_root to use the job's queue")
        credentials = {"secret": self.gcp_credentials_secret, "mount_path": self.gcp_credentials_path}
        try:
            return LaunchConfig.model_validate(
                {
                    "fleet": fleet,
                    "image": image,
                    "clusters": clusters,
                    "workspace": self.workspace,
                    "budget": self.budget,
                    "gpus": self.gpus,
                    "shared_memory": self.shared_memory,
                    "priority": self.priority,
                    "preemptible": self.preemptible,
                    "timeout": self.timeout,
                    "env": {**(self.env or {}), **({JOB_ROOTS_ENV: self.job_roots} if self.job_roots else {})},
                    "secret_env": self.secret_env or {},
                    "gcp_credentials": None if no_gcp_credentials else credentials,
                    "gcp_project": self.gcp_project or _pubsub_project(self.queue),
                    "host_path_mounts": self.host_path_mounts or [],
                    "weka_mounts": self.weka_mounts or [],
                    "worker": {
                        "queue": self.queue,
                        "subscription": subscription,
                        "idle_timeout": idle_timeout,
                        "retries": self.retries,
                        "retry_sleep": self.retry_sleep,
                        "extra_args": self.worker_args or [],
                    },
                }
            )
        except ValidationError as e:
            raise FleetError(f"invalid launch config: {describe(e)}") from None


def _pubsub_project(queue: str) -> str | None:
    """The project of a ``pubsub://PROJECT`` queue URL, else None."""
    if not queue.startswith("pubsub://"):
        return None
    return queue.removeprefix("pubsub://") or None
