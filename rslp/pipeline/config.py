"""``pipeline.yaml``: one validated config per pipeline, and the files it names.

A pipeline config names the rslearn dataset config and model config kept beside it,
the partitioners, the steps and the topic (worker pool) of each, the postprocessors,
where outputs go and every hardware knob rslearn has. Relative paths are relative to
the pipeline.yaml's own folder; in any of the three files ``${CONFIG_DIR}`` is the
folder of the file it appears in. How the files are read (bounded, ``${VAR}``, no
YAML aliases, one-line :class:`~rslp.pipeline.configfile.ConfigError`) is
:mod:`rslp.pipeline.configfile`'s.

A config lives in a job root that others may write: the dataset config written to a
partition keeps ``${RSLP_...}`` as is (rslearn resolves it when it opens the dataset,
so no value lands in a shared file), and no ``class_path`` outside the operator's
module prefixes is ever imported.

A worker loads the same pipeline.yaml for every task of a job: a validated config is
kept per process, keyed by its location, its text and the ``${RSLP_*}`` values it
names, so a changed file or variable is read anew.

Loading a config never imports torch; validating the dataset config imports
rslearn's config module only.
"""

from __future__ import annotations

import functools
import json
import os
from datetime import date
from typing import TYPE_CHECKING, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator
from upath import UPath

from rslp.errors import describe
from rslp.pipeline.configfile import (
    ConfigError,
    env_names,
    load_yaml,
    parse_structured,
    read_config_text,
    read_structured,
    substitute,
)
from rslp.storage import is_local
from rslp.task import TopicId
from rslp.trust import TRUSTED_CHECKPOINTS_ENV, class_paths
from rslp.trust import current as current_trust

if TYPE_CHECKING:
    from rslp.pipeline.partition import Partitioner
    from rslp.pipeline.postprocess import Postprocessor
    from rslp.pipeline.timerange import TimeRange

#: Per-partition steps in the only order they can run; a pipeline may leave some out.
PARTITION_STEPS = ("create_windows", "prepare", "ingest", "materialize", "predict", "postprocess")
#: Per-job steps, run once after every partition is done.
JOB_STEPS = ("combine", "observe")


def check_class_paths(raw: Any, source: str, where: str = "") -> None:
    """ConfigError for the first ``class_path`` in ``raw`` outside the operator's module prefixes.

    Run before anything imports a config's classes: importing a module runs its code.
    """
    trust = current_trust()
    for field, class_path in class_paths(raw, where):
        if (refusal := trust.class_path_refusal(class_path)) is not None:
            raise ConfigError(f"{source}: {field}: {refusal}")


class ClassSpec(BaseModel):
    """A pluggable part named as in rslearn configs: ``class_path`` + ``init_args``, built by jsonargparse as there."""

    model_config = ConfigDict(extra="forbid")

    class_path: str = Field(min_length=1)
    init_args: dict[str, Any] = Field(default_factory=dict)

    #: The spec as jsonargparse parsed it, per base class: a config is kept per process
    #: (:func:`load_pipeline_config`), and parsing costs 1 ms a build, constructing 0.1 ms.
    _parsed: dict[type[Any], Any] = PrivateAttr(default_factory=dict)

    def build(self, base: type[Any], source: str, where: str) -> Any:
        """The ``base`` subclass ``class_path`` names, constructed from ``init_args``.

        Its module prefix, and any other ``class_path`` in ``init_args``, is checked
        against the operator's first, before anything is imported; jsonargparse then
        imports it, checks it is a ``base`` and its arguments against its signature, and
        constructs it.
        """
        import jsonargparse

        spec = self.model_dump()
        check_class_paths(spec, source, where)  # init_args too: jsonargparse builds the parts they name
        parser = _part_parser(base)
        try:
            if (parsed := self._parsed.get(base)) is None:
                parsed = self._parsed[base] = parser.parse_object({"part": spec})
            return parser.instantiate(parsed).part
        except jsonargparse.ArgumentError as e:
            message = " ".join(str(e).split()).removeprefix('Parser key "part": ')
            raise ConfigError(f"{source}: {where}: {message}") from None
        except ValidationError as e:
            raise ConfigError(f"{source}: {describe(e, within=f'{where}.init_args')}") from None
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{source}: {where}.init_args: {' '.join(str(e).split())}") from None


def _part_parser(base: type[Any]) -> Any:
    """A parser of one ``base`` subclass given as ``class_path`` + ``init_args``, built once per process."""
    if (parser := _PART_PARSERS.get(base)) is None:
        import jsonargparse

        parser = jsonargparse.ArgumentParser(exit_on_error=False)
        parser.add_argument("--part", type=base, required=True)
        _PART_PARSERS[base] = parser
    return parser


_PART_PARSERS: dict[type[Any], Any] = {}


class StepSpec(BaseModel):
    """One step of the pipeline and the topic (worker pool) its tasks go to."""

    model_config = ConfigDict(extra="forbid")

    name: Literal[PARTITION_STEPS + JOB_STEPS]  # type: ignore[valid-type]
    topic: TopicId


class Hardware(BaseModel):
    """rslearn's performance knobs, in one place for every step."""

    model_config = ConfigDict(extra="forbid")

    workers: int = Field(
        default=0, ge=0, description="rslearn worker processes in prepare/ingest/materialize; 0 = in-process"
    )
    load_workers: int | None = Field(
        default=None, ge=0, description="processes that load window metadata (default: workers)"
    )
    batch_size: int = Field(default=16, ge=1, description="windows per rslearn batch in prepare/ingest/materialize")
    predict_batch_size: int | None = Field(
        default=None, ge=1, description="overrides model.yaml data.init_args.batch_size"
    )
    data_loader_workers: int = Field(
        default=0, ge=0, description="predict data loader processes (data.init_args.num_workers)"
    )
    device: str = Field(default="cpu", description="Lightning accelerator for predict: cpu, gpu, cuda, mps or auto")
    precision: str = Field(default="32-true", description="Lightning precision for predict, e.g. 32-true or bf16-mixed")
    retry_max_attempts: int = Field(default=0, ge=0, description="rslearn's own retries of data source calls")
    retry_backoff_seconds: float = Field(default=1.0, ge=0)


class ObserveSpec(BaseModel):
    """The observe step: class distribution of the job's raster output, and drift from a reference."""

    model_config = ConfigDict(extra="forbid")

    reference: dict[str, float] | None = Field(
        default=None, description="expected fraction per class name; None records the distribution only"
    )
    threshold: float | None = Field(
        default=None, ge=0, le=1, description="total variation distance above which `rslp status` warns"
    )
    class_names: list[str] | None = Field(default=None, description="name of class value i at index i")


class TimeRangeSpec(BaseModel):
    """The default time range of a pipeline's jobs: ISO 8601 ``start`` and ``end`` (end exclusive)."""

    model_config = ConfigDict(extra="forbid")

    # YAML reads an unquoted 2026-01-01 as a date: take it as that day's midnight UTC.
    start: str | date
    end: str | date


class PipelineConfig(BaseModel):
    """A validated pipeline.yaml. Build it with :func:`load_pipeline_config`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    dataset_config: str = Field(description="rslearn dataset config (dataset.json)")
    model: str | None = Field(default=None, description="rslearn model config (model.yaml); predict needs it")
    checkpoint: str | None = Field(
        default=None,
        description="model weights; predict needs them (weights only, unless the worker trusts its location)",
    )
    group: str = Field(default="default", min_length=1, description="the rslearn window group in each partition")
    partitioner: ClassSpec = ClassSpec(class_path="rslp.pipeline.partition.NoopPartitioner")
    window_partitioner: ClassSpec
    max_partitions: int = Field(
        default=1_000_000,
        ge=1,
        description="write-jobs refuses a plan with more partitions (a mistyped cell_size), before writing anything",
    )
    steps: list[StepSpec] = Field(min_length=1)
    postprocessors: list[ClassSpec] = Field(default_factory=list)
    output_dir: str | None = Field(
        default=None, description="where combine writes job outputs (default JOB_ROOT/output)"
    )
    hardware: Hardware = Hardware()
    observe: ObserveSpec | None = Field(default=None, description="settings of the observe step")
    time_range: TimeRangeSpec | None = Field(
        default=None,
        description="imagery period of features without their own start_time/end_time, unless --start/--end",
    )

    _source: UPath = PrivateAttr(default_factory=lambda: UPath("pipeline.yaml"))

    @model_validator(mode="before")
    @classmethod
    def _no_self_trust(cls, data: Any) -> Any:
        if isinstance(data, dict) and "trust_checkpoint" in data:
            raise ValueError(
                "trust_checkpoint is not read from a config (a file others may write): the operator trusts "
                f"checkpoint locations with rslp worker --trusted_checkpoints or ${TRUSTED_CHECKPOINTS_ENV}"
            )
        return data

    @model_validator(mode="after")
    def _check_steps(self) -> PipelineConfig:
        names = [s.name for s in self.steps]
        order = PARTITION_STEPS + JOB_STEPS
        if names != sorted(set(names), key=order.index):
            raise ValueError(f"steps must be unique and in this order: {', '.join(order)}; got {', '.join(names)}")
        if names[0] != "create_windows":
            raise ValueError("the first step must be create_windows")
        if "predict" in names and not (self.model and self.checkpoint):
            raise ValueError("the predict step needs both model and checkpoint")
        if "postprocess" in names and not self.postprocessors:
            raise ValueError("the postprocess step needs at least one entry in postprocessors")
        if "combine" in names and "postprocess" not in names:
            raise ValueError("combine merges the outputs of postprocess: add the postprocess step")
        if "observe" in names and "combine" not in names:
            raise ValueError("observe reads the job output that combine writes: add the combine step")
        return self

    @property
    def source(self) -> UPath:
        """The pipeline.yaml this config was read from."""
        return self._source

    @property
    def partition_steps(self) -> list[str]:
        """The per-partition steps, in order."""
        return [s.name for s in self.steps if s.name in PARTITION_STEPS]

    @property
    def job_steps(self) -> list[str]:
        """The per-job steps (combine, observe), in order."""
        return [s.name for s in self.steps if s.name in JOB_STEPS]

    @property
    def topics(self) -> dict[str, str]:
        """Step -> topic."""
        return {s.name: s.topic for s in self.steps}

    def resolve(self, path: str) -> UPath:
        """A path from the config: absolute or URL as is, else relative to pipeline.yaml's folder."""
        p = UPath(path)
        if p.is_absolute() or "://" in path:
            return p
        return self.source.parent / path

    def where(self, field: str) -> str:
        """``file: field`` prefix for errors about this config."""
        return f"{self.source}: {field}"

    def default_time_range(self) -> TimeRange | None:
        """``time_range`` parsed (TimeRangeError naming the field if it is not a valid range)."""
        from rslp.pipeline.timerange import TimeRange

        if self.time_range is None:
            return None
        return TimeRange.parse(self.time_range.start, self.time_range.end, self.where("time_range."), ("start", "end"))

    def build_partitioner(self) -> Partitioner:
        """The partitioner that splits a request into partitions (tasks)."""
        from rslp.pipeline.partition import Partitioner

        return cast(Partitioner, self.partitioner.build(Partitioner, str(self.source), "partitioner"))

    def build_window_partitioner(self) -> Partitioner:
        """The partitioner that splits a partition into rslearn windows."""
        from rslp.pipeline.partition import Partitioner

        return cast(Partitioner, self.window_partitioner.build(Partitioner, str(self.source), "window_partitioner"))

    def build_postprocessors(self) -> list[Postprocessor]:
        """The postprocessors, in config order."""
        from rslp.pipeline.postprocess import Postprocessor

        built = [
            p.build(Postprocessor, str(self.source), f"postprocessors.{i}") for i, p in enumerate(self.postprocessors)
        ]
        names = [p.name for p in built]
        if len(set(names)) != len(names):
            raise ConfigError(self.where(f"postprocessors: names must be unique, got {names}"))
        return built

    @property
    def dataset_path(self) -> UPath:
        """Where dataset.json is."""
        return self.resolve(self.dataset_config)

    def read_dataset(self) -> Any:
        """dataset.json as parsed, variables not yet replaced.

        One read, for :meth:`load_dataset_config` and :meth:`remember_secrets` to share within a task.
        """
        return read_structured(self.dataset_path, self.where("dataset_config"), json.loads)

    def load_dataset_config(self, resolve_env: bool = False, raw: Any = None) -> dict[str, Any]:
        """dataset.json with ``${CONFIG_DIR}`` replaced, validated by rslearn's own schema.

        ``${RSLP_*}`` stay as written unless ``resolve_env``: this is what a partition's
        config.json on the shared job root holds, and rslearn resolves them itself.
        ``raw``: dataset.json as :meth:`read_dataset` read it (None: read it now).
        """
        from rslearn.config import DatasetConfig

        path = self.dataset_path
        raw = self.read_dataset() if raw is None else raw
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a JSON object with a 'layers' field")
        check_class_paths(raw, str(path))
        variables = {"CONFIG_DIR": str(path.parent)}
        resolved = substitute(raw, str(path), variables)
        try:
            DatasetConfig.model_validate(resolved)
        except ValidationError as e:
            raise ConfigError(f"{path}: {describe(e)}") from None
        if resolve_env:
            return resolved  # type: ignore[no-any-return]
        return substitute(raw, str(path), variables, keep_env=True)  # type: ignore[no-any-return]

    def remember_secrets(self, raw: Any) -> None:
        """Hide the values of the ``${RSLP_*}`` variables dataset.json (``raw``, as read) names from every reason.

        A partition's config.json keeps ``${RSLP_*}`` as written and rslearn resolves it,
        so a worker whose task process never loaded dataset.json itself would not know
        which values to hide. Imports nothing.
        """
        path = self.dataset_path
        substitute(raw, str(path), {"CONFIG_DIR": str(path.parent)}, keep_env=True)

    def load_model_config(self) -> dict[str, Any]:
        """model.yaml with ``${VAR}`` replaced; rslearn's parser validates the rest."""
        if not self.model:
            raise ConfigError(self.where("model: not set, but the predict step needs it"))
        path = self.resolve(self.model)
        raw = read_structured(path, self.where("model"), load_yaml)
        if not isinstance(raw, dict) or "model" not in raw or "data" not in raw:
            raise ConfigError(f"{path}: expected a Lightning config with 'model' and 'data' sections")
        check_class_paths(raw, str(path))
        return substitute(raw, str(path), {"CONFIG_DIR": str(path.parent)})  # type: ignore[no-any-return]

    def checkpoint_path(self) -> UPath:
        """The checkpoint's path; raises ConfigError naming the field if it does not exist."""
        if not self.checkpoint:
            raise ConfigError(self.where("checkpoint: not set, but the predict step needs it"))
        path = self.resolve(self.checkpoint)
        if not path.exists():
            raise ConfigError(self.where(f"checkpoint: {path} does not exist"))
        return path

    def check(self) -> None:
        """Load everything the steps will load, so a broken file fails before any task is published."""
        self.build_partitioner()
        self.build_window_partitioner()
        self.default_time_range()
        layers = self.load_dataset_config(resolve_env=True)["layers"]
        for name, layer in layers.items():
            self._check_local_files(name, layer)
        for i, pp in enumerate(self.build_postprocessors()):
            if pp.layer not in layers:
                raise ConfigError(
                    f"{self.resolve(self.dataset_config)}: layers: no layer {pp.layer!r}, "
                    f"which postprocessors.{i} of {self.source} reads"
                )
        if "predict" in self.partition_steps:
            self.load_model_config()
            self.checkpoint_path()

    def _check_local_files(self, name: str, layer: dict[str, Any]) -> None:
        """LocalFiles' src_dir must exist and be absolute: relative means per-partition dataset."""
        source = layer.get("data_source") or {}
        if not source.get("class_path", "").endswith("LocalFiles"):  # rslearn's and rslp's DatedLocalFiles
            return
        src_dir = str(source.get("init_args", {}).get("src_dir", ""))
        field = f"{self.resolve(self.dataset_config)}: layers.{name}.data_source.init_args.src_dir"
        if not (UPath(src_dir).is_absolute() or "://" in src_dir):
            raise ConfigError(f"{field}: {src_dir!r} is relative; use an absolute path or ${{CONFIG_DIR}}/...")
        if not UPath(src_dir).is_dir():
            raise ConfigError(f"{field}: {src_dir} is not a directory")


def load_pipeline_config(path: str | os.PathLike[str]) -> PipelineConfig:
    """Read and validate a pipeline.yaml; raises ConfigError (one line) on any problem.

    The validated config is shared within the process (see the module docstring): it is
    frozen, so no caller can change another's.
    """
    source = UPath(path)
    if is_local(source):
        # Absolute, because workers may run elsewhere and the manifest records it.
        source = UPath(os.path.abspath(source.path))
    text = read_config_text(source, str(source))
    env = tuple((name, os.environ.get(name)) for name in env_names(text))
    return _validated(str(source), text, env)


@functools.lru_cache(maxsize=16)
def _validated(location: str, text: str, env: tuple[tuple[str, str | None], ...]) -> PipelineConfig:
    """The config that ``text`` at ``location`` describes, given the values ``env`` of the variables it names."""
    source = UPath(location)
    raw = parse_structured(text, source, load_yaml)
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of pipeline fields")
    raw = substitute(raw, location, {"CONFIG_DIR": str(source.parent)})
    try:
        config = PipelineConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{location}: {describe(e)}") from None
    config._source = source
    return config


def subscriptions(steps: list[str], topics: dict[str, str]) -> list[str]:
    """The subscriptions of ``steps``, later steps first, so workers finish partitions before starting new ones."""
    return list(dict.fromkeys(topics[s] for s in reversed(steps)))
