"""The task envelope: the only thing that crosses the queue.

A task names a registered workflow (``project`` + ``workflow``) and its arguments as
CLI strings, exactly like the ancestor's message ``{"project", "workflow", "args"}``,
which still parses. The envelope adds what a fleet needs to be safe and observable: a
schema version, a deterministic id (so duplicates and replays are recognisable), the
job / partition / step it belongs to, the failed-attempt count, the parent task and
the creation time.

Decoding never raises anything but :class:`TaskDecodeError`, whose message is one line
a user can act on, at most :data:`~rslp.errors.REASON_LIMIT` characters. Unknown fields
are rejected rather than silently dropped, because a field this version ignores is
usually a field the sender expected to matter.

A message is data (invariant 7): ids become path components, so they are checked here
in a strict form (:data:`~rslp.paths.ID_PATTERN`, task ids :data:`TASK_ID_PATTERN`);
a job task's id must be the one derived from its job, partition and step, so a
message cannot name another task's markers; times must carry a timezone.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from rslp.errors import describe, typed
from rslp.paths import ID_PATTERN
from rslp.text import clip

SCHEMA_VERSION = 1
#: Task ids: derived ids are 24 hex digits; a sender's own ids keep to this form.
TASK_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
#: Project and workflow names (looked up in the registry, never imported).
NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
#: A Pub/Sub topic id (Pub/Sub's own rules): 3-255 characters, a letter first, then letters,
#: digits and ``-_.~+%``; and not starting with ``goog``.
TOPIC_ID_PATTERN = r"^[A-Za-z][A-Za-z0-9._~+%-]*$"


def _not_goog(topic: str) -> str:
    if topic.startswith("goog"):
        raise ValueError(f"topic {topic[:100]!r} starts with 'goog', which Pub/Sub reserves")
    return topic


#: A topic named by data (a job's header, a done marker, a workflow's downstream): checked as a topic id.
TopicId = Annotated[
    str, StringConstraints(min_length=3, max_length=255, pattern=TOPIC_ID_PATTERN), AfterValidator(_not_goog)
]
#: A task's errors in its own words: an id that is not one, a time without its zone.
_PLAIN = {
    "string_pattern_mismatch": "not a valid id or name (letters, digits, '_', '-', '.'; no '/')",
    "timezone_aware": "needs a timezone (e.g. 2026-01-01T00:00:00Z)",
}


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
    project: str = Field(pattern=NAME_PATTERN)
    workflow: str = Field(pattern=NAME_PATTERN)
    args: list[str] = Field(default_factory=list)
    task_id: str = Field(default="", pattern=TASK_ID_PATTERN)
    job_id: str | None = Field(default=None, pattern=ID_PATTERN)
    job_root: str | None = Field(default=None, min_length=1, max_length=1024)
    partition: str | None = Field(default=None, pattern=ID_PATTERN)
    step: str | None = Field(default=None, pattern=ID_PATTERN)
    attempt: int = Field(default=0, ge=0)
    parent: str | None = Field(default=None, pattern=TASK_ID_PATTERN)
    created: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    time_limit: float | None = Field(default=None, gt=0)
    not_before: AwareDatetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _fill_task_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("task_id"):
            data = dict(data)
            if data.get("job_id"):
                parts = (data.get("job_id"), data.get("partition"), data.get("step"))
            else:
                parts = (data.get("project"), data.get("workflow"), json.dumps(data.get("args", [])))
            if all(p is None or isinstance(p, str) for p in parts):  # else the fields' own checks say why
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

    @model_validator(mode="after")
    def _check_job_fields(self) -> Task:
        """A job task names its job, partition and step together, and its id is derived from them.

        The id names the task's markers: a message that could choose it could mark
        another job's task done (its real run would then be skipped).
        """
        job = {"job_id": self.job_id, "partition": self.partition, "step": self.step}
        if any(job.values()) or self.job_root:
            if missing := [k for k, v in job.items() if not v]:
                raise ValueError(f"a job task needs job_id, partition and step together; missing {', '.join(missing)}")
            if self.task_id != task_id_for(self.job_id, self.partition, self.step):
                raise ValueError("task_id of a job task must be the id derived from its job_id, partition and step")
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
        raise TaskDecodeError(clip(f"message is not JSON ({typed(e)}): {preview!r}")) from None
    except RecursionError:
        raise TaskDecodeError("message is nested too deeply to be a task") from None
    if not isinstance(raw, dict):
        raise TaskDecodeError(f"message must be a JSON object, got {type(raw).__name__}")
    try:
        return Task.model_validate(raw)
    except ValidationError as e:
        raise TaskDecodeError(clip(f"invalid task message: {describe(e, 'the task schema', _PLAIN)}")) from None
    except RecursionError:
        raise TaskDecodeError("message is nested too deeply to be a task") from None


class Downstream(BaseModel):
    """A task a workflow asks the worker to publish after it succeeds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: TopicId
    task: Task
