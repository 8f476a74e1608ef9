"""The task envelope: the only thing that crosses the queue.

A task names a registered workflow (``project`` + ``workflow``) and its arguments as
CLI strings, exactly like the ancestor's message ``{"project", "workflow", "args"}``,
which still parses. The envelope adds what a fleet needs to be safe and observable: a
schema version, a deterministic id (so duplicates and replays are recognisable), the
job / partition / step it belongs to, the failed-attempt count, the parent task and
the creation time.

Decoding never raises anything but :class:`TaskDecodeError`, whose message is one line
a user can act on. Unknown fields are rejected rather than silently dropped, because a
field this version ignores is usually a field the sender expected to matter.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SCHEMA_VERSION = 1


class TaskDecodeError(ValueError):
    """A queue message is not a valid task; ``reason`` says why in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def task_id_for(*parts: str | None) -> str:
    """Deterministic task id: the same job, partition and step always give the same id."""
    joined = "\x1f".join(p or "" for p in parts)
    return hashlib.sha256(joined.encode()).hexdigest()[:24]


class Task(BaseModel):
    """One unit of work: run ``project``/``workflow`` with ``args``.

    ``attempt`` counts *failed* attempts so far; it travels in the message so that the
    retry budget is shared by every worker and is not consumed by preemption (a
    preempted task is republished with the same attempt).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = SCHEMA_VERSION
    project: str = Field(min_length=1)
    workflow: str = Field(min_length=1)
    args: list[str] = Field(default_factory=list)
    task_id: str = ""
    job_id: str | None = None
    job_root: str | None = None
    partition: str | None = None
    step: str | None = None
    attempt: int = Field(default=0, ge=0)
    parent: str | None = None
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))
    time_limit: float | None = Field(default=None, gt=0)
    not_before: datetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _fill_task_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("task_id"):
            data = dict(data)
            if data.get("job_id"):
                parts = (data.get("job_id"), data.get("partition"), data.get("step"))
            else:
                parts = (data.get("project"), data.get("workflow"), json.dumps(data.get("args", [])))
            data["task_id"] = task_id_for(*parts)
        return data

    @model_validator(mode="after")
    def _check_version(self) -> Task:
        if self.schema_version > SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {self.schema_version} is newer than this worker understands "
                f"({SCHEMA_VERSION}); upgrade the worker image"
            )
        return self

    @property
    def name(self) -> str:
        """``project/workflow``, as shown in logs and the CLI."""
        return f"{self.project}/{self.workflow}"

    def encode(self) -> bytes:
        """Serialize to the queue's wire format (UTF-8 JSON)."""
        return self.model_dump_json(exclude_none=True).encode()

    def log_fields(self) -> dict[str, Any]:
        """The ids that every log line about this task carries."""
        fields = {"task_id": self.task_id, "workflow": self.name, "attempt": self.attempt}
        if self.job_id:
            fields.update(job_id=self.job_id, partition=self.partition, step=self.step)
        return fields


def decode_task(data: bytes) -> Task:
    """Parse a queue message into a :class:`Task` or raise :class:`TaskDecodeError`."""
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        preview = data[:60].decode("utf-8", "replace")
        raise TaskDecodeError(f"message is not JSON ({e.__class__.__name__}: {e}): {preview!r}") from None
    if not isinstance(raw, dict):
        raise TaskDecodeError(f"message must be a JSON object, got {type(raw).__name__}")
    try:
        return Task.model_validate(raw)
    except ValidationError as e:
        reasons = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'message'}: {_short(err)}" for err in e.errors())
        raise TaskDecodeError(f"invalid task message: {reasons}") from None


def _short(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown field (not part of the task schema)"
    if err["type"] == "missing":
        return "required field is missing"
    return str(err["msg"])


class Downstream(BaseModel):
    """A task a workflow asks the worker to publish after it succeeds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: str
    task: Task
