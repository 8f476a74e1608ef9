"""The ``rslp`` console script's help and exit codes."""

from __future__ import annotations

import pytest

from rslp.cli import main


@pytest.mark.parametrize(("group", "members"), [("dlq", ["list", "show", "replay"]), ("fleet", ["status", "stop"])])
def test_group_help_lists_its_subcommands_and_exits_0(group: str, members: list[str], capsys) -> None:
    assert main([group, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"usage: rslp {group} SUBCOMMAND" in out
    for member in members:
        assert f"{group} {member}" in out


def test_unknown_group_member_is_a_usage_error(capsys) -> None:
    assert main(["dlq", "bogus"]) == 2
    assert "dlq list" in capsys.readouterr().out


def test_the_error_line_escapes_control_characters_from_its_input(tmp_path, capsys) -> None:
    """Issue 25.10: an escape sequence in a path reached the terminal raw through the one-line error."""
    config = f"{tmp_path}/\x1b]52;c;cHduZWQ=\x07\x1b[2J.yaml"
    code = main(["write-jobs", "--config", config, "--request", "r.geojson", "--job_root", str(tmp_path / "j")])
    assert code == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err
    assert "\\x1b]52;c;cHduZWQ=\\x07\\x1b[2J.yaml" in err and err.count("\n") == 1
