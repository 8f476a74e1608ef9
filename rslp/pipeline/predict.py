"""Predict: the model is loaded once per worker process, then run on one partition at a time.

``rslearn model predict`` pays about 8 s of imports and model set-up per call. Here the
worker's long-lived task process builds the LightningModule from model.yaml and loads
the checkpoint once (:data:`_MODELS`, keyed by the model config and the checkpoint),
and each task builds only what is specific to its partition: the data module (the
partition's dataset), the prediction writer (it binds to one dataset on first use, so
it cannot be shared) and a Trainer (cheap).

Pipeline-level settings override model.yaml where the pipeline owns them: the dataset
path and window group, ``skip_targets`` (a pipeline has no labels), skipping windows
whose output is already complete (so a retried task finishes the rest rather than
redoing all), the hardware knobs, and no logger (rslearn would write config.yaml and
lightning_logs/ into the working directory). The checkpoint is read through UPath,
never through rslearn's /tmp cache, which is never refreshed.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import hashlib
import io
import json
import logging
import pickle
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from upath import UPath

from rslp import log
from rslp.errors import one_line
from rslp.pipeline.config import Hardware, PipelineConfig
from rslp.pipeline.configfile import ConfigError
from rslp.trust import TRUSTED_CHECKPOINTS_ENV
from rslp.trust import current as current_trust

logger = log.get(__name__)


@dataclass
class LoadedModel:
    """A model ready to predict, and the raw config sections each task instantiates afresh."""

    module: Any  # rslearn.train.lightning_module.RslearnLightningModule
    data: dict[str, Any]
    callbacks: list[Any]
    source: str


#: (model config digest, checkpoint, device) -> model; one entry per worker process in practice.
_MODELS: dict[tuple[str, str, str], LoadedModel] = {}


def _parser(with_model: bool) -> Any:
    import jsonargparse
    from lightning.pytorch import LightningDataModule, LightningModule
    from lightning.pytorch.callbacks import Callback
    from rslearn.utils.jsonargparse import init_jsonargparse

    init_jsonargparse()
    parser = jsonargparse.ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(LightningDataModule, "data", required=True)
    parser.add_argument("--callbacks", type=list[Callback] | None, default=None)
    if with_model:
        parser.add_subclass_arguments(LightningModule, "model", required=True)
        # As rslearn's CLI does: the model and the data module share one task object.
        parser.link_arguments("data.init_args.task", "model.init_args.task", apply_on="instantiate")
    return parser


def _instantiate(parser: Any, raw: dict[str, Any], source: str) -> Any:
    """Parse (a config error if it fails: permanent) and build (may fail transiently, e.g. a download)."""
    import jsonargparse

    try:
        config = parser.parse_object(raw)
    except (jsonargparse.ArgumentError, TypeError, ValueError) as e:
        raise ConfigError(f"{source}: {one_line(e, 400)}") from None
    return parser.instantiate(config)


def load_model(config: PipelineConfig) -> LoadedModel:
    """The pipeline's model with its checkpoint loaded, built once per process."""
    raw = config.load_model_config()
    checkpoint = config.checkpoint_path()
    digest = hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()
    key = (digest, str(checkpoint), config.hardware.device)
    if key in _MODELS:
        return _MODELS[key]
    with _collector_paused():
        model = _load(config, raw, checkpoint)
    _MODELS[key] = model
    return model


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a model loads, and what loading made frozen after.

    Loading imports torch and Lightning and builds the model: millions of objects that live
    as long as the process. The collector traverses every one of them again at each full
    collection while they are being made (six in the demo's first predict, 1.07 s of its
    6 s, measured); paused, it makes none, and frozen (``gc.freeze``) they are left out of
    every later one. Loading makes almost no garbage in cycles (20-30 objects a collection).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def _load(config: PipelineConfig, raw: dict[str, Any], checkpoint: UPath) -> LoadedModel:
    """Build the model of ``raw`` (model.yaml) and load ``checkpoint`` into it."""
    import torch

    started = time.monotonic()
    source = str(config.resolve(config.model or ""))
    data = raw["data"]
    callbacks = (raw.get("trainer") or {}).get("callbacks") or []
    # The path is only a placeholder here: each task sets its partition's dataset.
    placeholder = copy.deepcopy(data)
    placeholder.setdefault("init_args", {})["path"] = "unused"
    module = _instantiate(_parser(with_model=True), {"model": raw["model"], "data": placeholder}, source).model
    # A checkpoint is a file in a job root or bucket that others may write: unpickling it
    # fully would run any code it holds. Only tensors and plain containers, unless the
    # operator trusts its location (rslp worker --trusted_checkpoints); no config can.
    trusted = current_trust().trusts_checkpoint(str(checkpoint))
    if trusted:
        logger.warning("checkpoint_fully_unpickled", checkpoint=str(checkpoint), reason="a trusted location")
    try:
        state = torch.load(io.BytesIO(checkpoint.read_bytes()), map_location="cpu", weights_only=not trusted)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError) as e:
        if code := re.search(r"unsupported GLOBAL \S+", str(e)):
            raise ConfigError(
                config.where(
                    f"checkpoint: {checkpoint} holds more than weights and was not loaded ({code.group(0)}); "
                    "re-save it with torch.save(model.state_dict()) or, if the file is yours, have the "
                    f"operator trust its location (rslp worker --trusted_checkpoints or ${TRUSTED_CHECKPOINTS_ENV})"
                )
            ) from None
        raise ConfigError(
            config.where(f"checkpoint: {checkpoint} is not a PyTorch checkpoint ({one_line(e, 400)})")
        ) from None
    try:
        missing, unexpected = module.load_state_dict(state.get("state_dict", state), strict=False)
    except RuntimeError as e:  # shapes differ
        raise ConfigError(
            config.where(f"checkpoint: {checkpoint} does not fit {source} ({one_line(e, 400)})")
        ) from None
    if missing or unexpected:
        raise ConfigError(
            config.where(
                f"checkpoint: {checkpoint} does not fit {source}: missing {missing[:3]}, unexpected {unexpected[:3]}"
            )
        )
    module.eval()
    logger.info("model loaded", model=source, checkpoint=str(checkpoint), seconds=time.monotonic() - started)
    return LoadedModel(module=module, data=data, callbacks=callbacks, source=source)


def _partition_objects(model: LoadedModel, root: UPath, group: str, hw: Hardware) -> tuple[Any, Any]:
    """A data module reading the partition's dataset, and a fresh RslearnWriter."""
    from rslearn.train.prediction_writer import RslearnWriter

    data = copy.deepcopy(model.data)
    args = data.setdefault("init_args", {})
    args["path"] = str(root)
    args["num_workers"] = hw.data_loader_workers
    if hw.predict_batch_size:
        args["batch_size"] = hw.predict_batch_size
    built = _instantiate(_parser(with_model=False), {"data": data, "callbacks": model.callbacks}, model.source)
    writers = [cb for cb in built.callbacks or [] if isinstance(cb, RslearnWriter)]
    if len(writers) != 1:
        raise ConfigError(
            f"{model.source}: trainer.callbacks: expected exactly one rslearn.train.prediction_writer.RslearnWriter "
            f"(it writes the predictions into the windows), found {len(writers)}"
        )
    split = built.data.split_configs["predict"]
    split.groups = [group]
    split.skip_targets = True
    split.output_layer_name_skip_inference_if_exists = writers[0].output_layer
    return built.data, writers[0]


def predict(config: PipelineConfig, root: UPath, group: str) -> tuple[str, int]:
    """Predict every covered window of the partition dataset at ``root`` that lacks output.

    Returns the output layer and the number of windows with output, after checking that
    every covered window has it.
    """
    model = load_model(config)  # first: the first call imports torch and Lightning, with the collector paused
    from lightning.pytorch import Trainer

    from rslp.pipeline.rslearn_ops import covered_windows, open_dataset

    # Lightning prints its accelerator banner at INFO for every Trainer: once per task here.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    hw = config.hardware
    started = time.monotonic()
    datamodule, writer = _partition_objects(model, root, group, hw)
    scratch = tempfile.mkdtemp(prefix="rslp-predict-")
    try:
        trainer = Trainer(
            accelerator=hw.device,
            devices=1,
            precision=hw.precision,  # type: ignore[arg-type]
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            use_distributed_sampler=False,
            default_root_dir=scratch,
            callbacks=[writer],
        )
        trainer.predict(model.module, datamodule=datamodule, return_predictions=False)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    dataset = open_dataset(root)
    covered, _ = covered_windows(dataset, dataset.load_windows(groups=[group]))
    if missing := [w.name for w in covered if not w.is_layer_completed(writer.output_layer)]:
        raise RuntimeError(
            f"predict finished but {len(missing)} windows lack layer {writer.output_layer!r}, e.g. {missing[0]}"
        )
    logger.info("predicted", windows=len(covered), layer=writer.output_layer, seconds=time.monotonic() - started)
    return writer.output_layer, len(covered)
