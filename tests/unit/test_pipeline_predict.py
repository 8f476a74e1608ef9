"""Predict's model loading: cached per process, and every bad model input a one-line permanent error."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from rslp import trust
from rslp.pipeline import predict
from rslp.pipeline.config import load_pipeline_config
from rslp.pipeline.configfile import ConfigError


def load(demo: Path) -> predict.LoadedModel:
    return predict.load_model(load_pipeline_config(demo / "pipeline.yaml"))


def edit_model(demo: Path, edit: object) -> None:
    raw = yaml.safe_load((demo / "model.yaml").read_text())
    edit(raw)  # type: ignore[operator]
    (demo / "model.yaml").write_text(yaml.safe_dump(raw))


def test_the_model_is_built_once_per_config_and_checkpoint(demo_copy: Path) -> None:
    first = load(demo_copy)
    assert load(demo_copy) is first
    assert not first.module.training
    shutil.copy(demo_copy / "checkpoint.ckpt", demo_copy / "other.ckpt")
    text = (demo_copy / "pipeline.yaml").read_text().replace("checkpoint.ckpt", "other.ckpt")
    (demo_copy / "pipeline.yaml").write_text(text)
    assert load(demo_copy) is not first


def test_a_file_that_is_not_a_checkpoint(demo_copy: Path) -> None:
    (demo_copy / "checkpoint.ckpt").write_text("not a checkpoint")
    with pytest.raises(ConfigError) as e:
        load(demo_copy)
    assert str(e.value).startswith(
        f"{demo_copy}/pipeline.yaml: checkpoint: {demo_copy}/checkpoint.ckpt is not a PyTorch"
    )


def test_a_checkpoint_that_does_not_fit_the_model(demo_copy: Path) -> None:
    def narrower(raw: dict) -> None:  # type: ignore[type-arg]
        raw["model"]["init_args"]["model"]["init_args"]["decoder"][0]["init_args"]["out_channels"] = 3
        raw["data"]["init_args"]["task"]["init_args"]["num_classes"] = 3

    edit_model(demo_copy, narrower)
    with pytest.raises(
        ConfigError, match=r"pipeline.yaml: checkpoint: .* does not fit .*/model.yaml \(.*size mismatch"
    ):
        load(demo_copy)


def test_an_unknown_class_in_model_yaml(demo_copy: Path) -> None:
    def typo(raw: dict) -> None:  # type: ignore[type-arg]
        raw["model"]["init_args"]["model"]["init_args"]["decoder"][1]["class_path"] = "rslearn.train.tasks.Nope"

    edit_model(demo_copy, typo)
    with pytest.raises(ConfigError) as e:
        load(demo_copy)
    assert str(e.value).startswith(f"{demo_copy}/model.yaml: ") and "\n" not in str(e.value)


def test_model_yaml_needs_a_prediction_writer(demo_copy: Path, tmp_path: Path) -> None:
    edit_model(demo_copy, lambda raw: raw["trainer"].pop("callbacks"))
    with pytest.raises(ConfigError, match=r"model.yaml: trainer.callbacks: expected exactly one .*RslearnWriter"):
        predict._partition_objects(
            load(demo_copy), tmp_path, "default", load_pipeline_config(demo_copy / "pipeline.yaml").hardware
        )  # type: ignore[arg-type]


class _Payload:
    """Unpickling this runs os.makedirs(path): stands in for any code a checkpoint could carry."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        import os

        return (os.makedirs, (self.path,))


def test_a_checkpoint_is_loaded_as_weights_only_unless_the_operator_trusts_its_location(
    demo_copy: Path, tmp_path: Path
) -> None:
    import torch

    ran = tmp_path / "payload-ran"
    state = torch.load(demo_copy / "checkpoint.ckpt", map_location="cpu", weights_only=True)
    state["payload"] = _Payload(str(ran))
    torch.save(state, demo_copy / "checkpoint.ckpt")
    with pytest.raises(ConfigError, match=r"holds more than weights and was not loaded.*--trusted_checkpoints"):
        load(demo_copy)
    assert not ran.exists()

    # A config cannot trust its own checkpoint: the field is refused, naming the operator's flag.
    pipeline = demo_copy / "pipeline.yaml"
    pipeline.write_text(pipeline.read_text() + "\ntrust_checkpoint: true\n")
    with pytest.raises(ConfigError, match=r"trust_checkpoint is not read from a config.*--trusted_checkpoints"):
        load(demo_copy)
    pipeline.write_text(pipeline.read_text().replace("\ntrust_checkpoint: true\n", ""))

    # A trusted location elsewhere, or one reached through a symlink out of it, is not this file's.
    (tmp_path / "trusted").mkdir()
    trust.configure(trust.Trust(checkpoints=(str(tmp_path / "trusted"),)))
    try:
        (tmp_path / "trusted" / "escape").symlink_to(demo_copy)
        escaped = str(tmp_path / "trusted" / "escape" / "checkpoint.ckpt")
        pipeline.write_text(pipeline.read_text().replace("checkpoint.ckpt", escaped))
        with pytest.raises(ConfigError, match="holds more than weights"):
            load(demo_copy)
        assert not ran.exists()
        trust.configure(trust.Trust(checkpoints=(str(demo_copy),)))
        assert load(demo_copy) is not None  # the operator trusts the location: full unpickling, with a warning
        assert ran.exists()
    finally:
        trust.configure(None)
