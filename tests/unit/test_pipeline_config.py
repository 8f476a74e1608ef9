"""pipeline.yaml: validation, strict ${VAR}, paths, pluggable parts, and the files it names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from rslp.errors import PermanentError
from rslp.pipeline.config import load_pipeline_config
from rslp.pipeline.configfile import ConfigError
from rslp.pipeline.demo import DEMO_DIR
from rslp.pipeline.partition import GridPartitioner
from rslp.pipeline.postprocess import RasterMerge


def edit_yaml(path: Path, **changes: object) -> Path:
    raw = yaml.safe_load(path.read_text())
    raw.update(changes)
    path.write_text(yaml.safe_dump(raw))
    return path


def one_line(e: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(e.value)
    assert "\n" not in text
    return text


def test_demo_config_loads_with_steps_topics_and_knobs() -> None:
    config = load_pipeline_config(DEMO_DIR / "pipeline.yaml")
    assert config.partition_steps == ["create_windows", "prepare", "ingest", "materialize", "predict", "postprocess"]
    assert config.job_steps == ["combine", "observe"]
    assert config.topics["predict"] == "demo-gpu" and config.topics["combine"] == "demo-combine"
    assert config.hardware.predict_batch_size == 8 and config.hardware.device == "cpu"
    assert isinstance(config.build_partitioner(), GridPartitioner)
    assert isinstance(config.build_postprocessors()[0], RasterMerge)
    assert config.source.is_absolute()


def test_relative_paths_resolve_beside_pipeline_yaml(demo_copy: Path) -> None:
    config = load_pipeline_config(demo_copy / "pipeline.yaml")
    assert config.resolve("dataset.json").path == str(demo_copy / "dataset.json")
    assert config.resolve("/abs/x.ckpt").path == "/abs/x.ckpt"
    assert config.resolve("gs://bucket/x.ckpt").protocol == "gs"
    layers = config.load_dataset_config()["layers"]
    assert layers["image"]["data_source"]["init_args"]["src_dir"] == f"{demo_copy}/data/images"


def test_unset_variable_is_an_error_naming_file_and_field(demo_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RSLP_TEST_UNSET", raising=False)
    edit_yaml(demo_copy / "pipeline.yaml", output_dir="${RSLP_TEST_UNSET}/out")
    with pytest.raises(ConfigError) as e:
        load_pipeline_config(demo_copy / "pipeline.yaml")
    assert one_line(e) == (
        f'{demo_copy}/pipeline.yaml: output_dir: ${{RSLP_TEST_UNSET}} is not set (export it; unset is not "")'
    )
    monkeypatch.setenv("RSLP_TEST_UNSET", "/data")
    assert load_pipeline_config(demo_copy / "pipeline.yaml").output_dir == "/data/out"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"steps": [{"name": "create_windows", "topic": "ab"}]}, "steps.0.topic: String should have at least 3"),
        ({"colour": "red"}, "colour: unknown field"),
        ({"hardware": {"batch_size": 0}}, "hardware.batch_size: Input should be greater than or equal to 1"),
        ({"hardware": {"workers": "many"}}, "hardware.workers: Input should be a valid integer"),
        (
            {"steps": [{"name": "prepare", "topic": "cpu"}, {"name": "create_windows", "topic": "cpu"}]},
            "steps must be unique and in this order",
        ),
        (
            {"steps": [{"name": "create_windows", "topic": "cpu"}, {"name": "combine", "topic": "cpu"}]},
            "add the postprocess",
        ),
        ({"checkpoint": None}, "the predict step needs both model and checkpoint"),
        ({"steps": [{"name": "create_windows", "topic": "cpu"}, {"name": "predicts", "topic": "cpu"}]}, "steps.1.name"),
    ],
)
def test_field_errors_name_the_field(demo_copy: Path, changes: dict[str, object], expected: str) -> None:
    edit_yaml(demo_copy / "pipeline.yaml", **changes)
    with pytest.raises(ConfigError) as e:
        load_pipeline_config(demo_copy / "pipeline.yaml")
    assert one_line(e).startswith(f"{demo_copy}/pipeline.yaml: ")
    assert expected in str(e.value)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"class_path": "rslp.no_such.Partitioner"},
            "partitioner: Problem with given class_path 'rslp.no_such.Partitioner'",
        ),
        (
            {"class_path": "rslp.pipeline.config.Hardware"},
            "partitioner: Import path rslp.pipeline.config.Hardware does not correspond to a subclass of Partitioner",
        ),
        (
            {"class_path": "collections.OrderedDict"},
            "partitioner.class_path: collections.OrderedDict is not under a module prefix this worker allows",
        ),
        (
            {"class_path": "rslp.pipeline.partition.GridPartitioner", "init_args": {"cell_size": -4}},
            "partitioner.init_args.cell_size: Input should be greater than 0",
        ),
        (
            {"class_path": "rslp.pipeline.partition.GridPartitioner", "init_args": {"cell_size": 4, "size": 1}},
            "partitioner: Problem with given class_path 'rslp.pipeline.partition.GridPartitioner': "
            "Option 'size' is not accepted",
        ),
    ],
)
def test_pluggable_part_errors_point_at_class_path_or_init_args(
    demo_copy: Path, spec: dict[str, object], expected: str
) -> None:
    edit_yaml(demo_copy / "pipeline.yaml", partitioner=spec)
    config = load_pipeline_config(demo_copy / "pipeline.yaml")
    with pytest.raises(ConfigError) as e:
        config.check()
    assert expected in one_line(e)


def planted_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A module ``planted`` on the import path that leaves a file when imported (returned); no operator prefixes."""
    ran = tmp_path / "imported"
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "planted.py").write_text(f"open({str(ran)!r}, 'w').close()\nclass Part: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    monkeypatch.delenv("RSLP_CLASS_PREFIXES", raising=False)
    return ran


def test_a_class_path_outside_the_operators_prefixes_is_never_imported(
    demo_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Importing runs a module's code: a config in a job root must not choose what is imported (issue 25.10)."""
    ran = planted_module(tmp_path, monkeypatch)
    edit_yaml(demo_copy / "pipeline.yaml", partitioner={"class_path": "planted.Part"})
    config = load_pipeline_config(demo_copy / "pipeline.yaml")
    with pytest.raises(ConfigError, match=r"partitioner.class_path: planted.Part is not under a module prefix"):
        config.build_partitioner()
    dataset = json.loads((demo_copy / "dataset.json").read_text())
    dataset["layers"]["image"]["data_source"]["class_path"] = "planted.Part"
    (demo_copy / "dataset.json").write_text(json.dumps(dataset))
    with pytest.raises(ConfigError, match=r"dataset.json: layers.image.data_source.class_path: planted.Part is not"):
        config.load_dataset_config()
    model = yaml.safe_load((demo_copy / "model.yaml").read_text())
    model["model"]["init_args"]["model"]["class_path"] = "planted.Part"
    (demo_copy / "model.yaml").write_text(yaml.safe_dump(model))
    with pytest.raises(ConfigError, match=r"model.yaml: model.init_args.model.class_path: planted.Part is not"):
        config.load_model_config()
    assert not ran.exists()

    monkeypatch.setenv("RSLP_CLASS_PREFIXES", "planted")  # the operator allows it: imported, then type-checked
    with pytest.raises(ConfigError, match=r"planted\.Part does not correspond to a subclass of Partitioner"):
        config.build_partitioner()
    assert ran.exists()


def test_a_class_path_inside_init_args_is_checked_before_anything_is_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """jsonargparse builds the parts that init_args name: their class paths pass the same check first."""
    from rslp.pipeline.config import ClassSpec
    from rslp.pipeline.partition import Partitioner

    ran = planted_module(tmp_path, monkeypatch)
    spec = ClassSpec(
        class_path="rslp.pipeline.partition.GridPartitioner", init_args={"cell_size": {"class_path": "planted.Part"}}
    )
    with pytest.raises(ConfigError, match=r"partitioner.init_args.cell_size.class_path: planted.Part is not under"):
        spec.build(Partitioner, "pipeline.yaml", "partitioner")
    assert not ran.exists()


def test_broken_dataset_json_is_one_line_naming_file_and_field(demo_copy: Path) -> None:
    raw = json.loads((demo_copy / "dataset.json").read_text())
    del raw["layers"]["image"]["data_source"]["class_path"]
    (demo_copy / "dataset.json").write_text(json.dumps(raw))
    with pytest.raises(ConfigError) as e:
        load_pipeline_config(demo_copy / "pipeline.yaml").check()
    assert one_line(e) == f"{demo_copy}/dataset.json: layers.image.data_source.class_path: required field is missing"

    (demo_copy / "dataset.json").write_text('{"layers": {')
    with pytest.raises(ConfigError, match=r"dataset.json: line 1 column 13: not valid JSON"):
        load_pipeline_config(demo_copy / "pipeline.yaml").check()


def test_local_files_src_dir_must_exist_and_be_absolute(demo_copy: Path) -> None:
    raw = json.loads((demo_copy / "dataset.json").read_text())
    raw["layers"]["image"]["data_source"]["init_args"]["src_dir"] = "data/images"
    (demo_copy / "dataset.json").write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match=r"layers.image.data_source.init_args.src_dir: 'data/images' is relative"):
        load_pipeline_config(demo_copy / "pipeline.yaml").check()
    raw["layers"]["image"]["data_source"]["init_args"]["src_dir"] = "${CONFIG_DIR}/nowhere"
    (demo_copy / "dataset.json").write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match=r"src_dir: .*/nowhere is not a directory"):
        load_pipeline_config(demo_copy / "pipeline.yaml").check()


def test_missing_checkpoint_and_model_are_named(demo_copy: Path) -> None:
    (demo_copy / "checkpoint.ckpt").unlink()
    with pytest.raises(ConfigError) as e:
        load_pipeline_config(demo_copy / "pipeline.yaml").check()
    assert one_line(e) == f"{demo_copy}/pipeline.yaml: checkpoint: {demo_copy}/checkpoint.ckpt does not exist"
    (demo_copy / "model.yaml").unlink()
    with pytest.raises(ConfigError, match=r"pipeline.yaml: model: .*/model.yaml does not exist"):
        load_pipeline_config(demo_copy / "pipeline.yaml").check()


def test_postprocessor_layer_must_exist_in_dataset(demo_copy: Path) -> None:
    edit_yaml(
        demo_copy / "pipeline.yaml",
        postprocessors=[{"class_path": "rslp.pipeline.postprocess.RasterMerge", "init_args": {"layer": "outptu"}}],
    )
    with pytest.raises(ConfigError, match=r"dataset.json: layers: no layer 'outptu'"):
        load_pipeline_config(demo_copy / "pipeline.yaml").check()


def test_config_errors_are_permanent() -> None:
    assert issubclass(ConfigError, PermanentError)
    with pytest.raises(ConfigError, match=r"does not exist"):
        load_pipeline_config("/nonexistent/pipeline.yaml")


def test_only_config_dir_and_rslp_variables_are_substituted(demo_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A config may not read the worker's other env vars (Beaker secrets are env vars)."""
    monkeypatch.setenv("SECRET", "hunter2-topsecret")
    edit_yaml(demo_copy / "pipeline.yaml", output_dir="${SECRET}/out")
    with pytest.raises(ConfigError) as e:
        load_pipeline_config(demo_copy / "pipeline.yaml")
    assert "${SECRET} is not allowed" in one_line(e) and "hunter2" not in one_line(e)


def test_a_resolved_variable_is_never_echoed_in_an_error(demo_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RSLP_TEST_KEY", "hunter2-topsecret")
    edit_yaml(demo_copy / "pipeline.yaml", partitioner={"class_path": "x.${RSLP_TEST_KEY}.Y"})
    config = load_pipeline_config(demo_copy / "pipeline.yaml")
    with pytest.raises(ConfigError) as e:
        config.check()
    assert "class_path" in one_line(e) and "hunter2" not in one_line(e) and "***" in one_line(e)


def test_a_resolved_variable_is_not_written_into_the_partition_dataset_config(
    demo_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Partitions' config.json (on the shared job root) keeps ${RSLP_*}; rslearn resolves it when it opens it."""
    monkeypatch.setenv("RSLP_TEST_KEY", "hunter2-topsecret")
    raw = json.loads((demo_copy / "dataset.json").read_text())
    raw["layers"]["image"]["data_source"]["init_args"]["api_key"] = "${RSLP_TEST_KEY}"
    (demo_copy / "dataset.json").write_text(json.dumps(raw))
    config = load_pipeline_config(demo_copy / "pipeline.yaml")
    written = config.load_dataset_config()
    assert written["layers"]["image"]["data_source"]["init_args"]["api_key"] == "${RSLP_TEST_KEY}"
    assert "hunter2" not in json.dumps(written)
    assert written["layers"]["image"]["data_source"]["init_args"]["src_dir"] == f"{demo_copy}/data/images"
    resolved = config.load_dataset_config(resolve_env=True)
    assert resolved["layers"]["image"]["data_source"]["init_args"]["api_key"] == "hunter2-topsecret"


def test_yaml_aliases_are_refused_before_they_expand(demo_copy: Path) -> None:
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]" for p, c in zip("abcde", "bcdef", strict=True)]
    text = (demo_copy / "pipeline.yaml").read_text() + "\nbomb:\n" + "\n".join(f"  {line}" for line in levels) + "\n"
    (demo_copy / "pipeline.yaml").write_text(text)
    with pytest.raises(ConfigError) as e:
        load_pipeline_config(demo_copy / "pipeline.yaml")
    assert "aliases are not allowed (*a)" in one_line(e)
