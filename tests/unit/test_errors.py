"""One error tree: each error a user can act on ends both command lines with its own exit code, in one line."""

from __future__ import annotations

import pytest

from rslp import cli
from rslp import main as rslp_main
from rslp.errors import ExitCode, Interrupted, PermanentError, QueueResourceError, RslpError, run_command
from rslp.launch.fleet import FleetError, FleetTimeoutError
from rslp.weather import CloudRefusedError, CloudUnavailableError


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (PermanentError("bad request"), ExitCode.USAGE),
        (FleetTimeoutError("beaker did not answer"), ExitCode.USAGE),
        (QueueResourceError("no topic t"), ExitCode.PERMANENT_QUEUE_ERROR),
        (CloudRefusedError("no subscription s"), ExitCode.PERMANENT_QUEUE_ERROR),
        (CloudUnavailableError("still failing"), ExitCode.UNAVAILABLE),
        (FileNotFoundError("no such file"), ExitCode.USAGE),
        (ValueError("not a number"), ExitCode.USAGE),
    ],
)
def test_each_error_ends_a_command_with_its_own_exit_code_in_one_line(
    error: Exception, code: ExitCode, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail() -> None:
        raise error

    assert run_command("rslp x", fail) == code
    assert capsys.readouterr().err == f"rslp x: error: {error}\n"


def test_every_rslp_error_is_under_one_root_that_carries_its_exit_code() -> None:
    for kind in (PermanentError, QueueResourceError, FleetError, CloudUnavailableError, Interrupted):
        assert issubclass(kind, RslpError)
    assert Interrupted.exit_code == ExitCode.INTERRUPTED


def test_a_bug_keeps_its_traceback() -> None:
    def bug() -> None:
        raise KeyError("oops")

    with pytest.raises(KeyError):
        run_command("rslp x", bug)


def test_the_ancestor_command_line_reports_bad_input_in_one_line_as_rslp_does(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`python -m rslp.main common worker` with no queue: a one-line error and exit 2, not a traceback."""
    assert rslp_main.main(["common", "worker"]) == ExitCode.USAGE
    assert capsys.readouterr().err == "error: give --queue pubsub://PROJECT or local://PATH.db, or --project_id\n"
    assert cli.main(["worker"]) == ExitCode.USAGE
    assert capsys.readouterr().err == (
        "rslp worker: error: give --queue pubsub://PROJECT or local://PATH.db, or --project_id\n"
    )
