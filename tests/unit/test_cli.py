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
