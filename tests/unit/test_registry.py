import pytest

from rslp import registry
from rslp.errors import BadArgsError, UnknownWorkflowError
from rslp.main import main


def test_common_workflows_are_registered() -> None:
    assert {"worker", "launch", "write_file", "sleep", "fail"} <= set(registry.projects()["common"])


def test_unknown_project_and_workflow_name_what_exists() -> None:
    with pytest.raises(UnknownWorkflowError, match="unknown project 'os'"):
        registry.get("os", "system")
    with pytest.raises(UnknownWorkflowError, match=r"registered: .*write_file"):
        registry.get("common", "rm_rf")


def test_args_parse_positionally_and_by_flag(tmp_path) -> None:
    registry.get("common", "write_file").run([str(tmp_path / "a"), "abc"])
    assert (tmp_path / "a").read_text() == "abc"
    registry.get("common", "sleep").run(["0", str(tmp_path / "b")])
    registry.get("common", "sleep").run(["0", "--fname", str(tmp_path / "c")])
    assert (tmp_path / "b").exists() and (tmp_path / "c").exists()


@pytest.mark.parametrize("args", [["only-one"], ["a", "b", "c"], ["--nope", "1"]])
def test_bad_args_are_a_permanent_error(args: list[str]) -> None:
    with pytest.raises(BadArgsError, match="bad args"):
        registry.get("common", "write_file").parse_args(args)


def test_python_m_rslp_main_runs_a_workflow(tmp_path, capsys) -> None:
    assert main(["common", "write_file", str(tmp_path / "f"), "hi"]) == 0
    assert (tmp_path / "f").read_text() == "hi"
    assert main(["common", "nope"]) == 2
    assert "unknown workflow" in capsys.readouterr().err


def test_required_params_may_be_given_as_flags(tmp_path) -> None:
    wf = registry.get("common", "write_file")
    assert wf.parse_args(["--fname", "f", "--contents", "c"]) == {"fname": "f", "contents": "c"}
    assert registry.get("common", "sleep").parse_args(["--seconds", "1"])["seconds"] == 1.0
