"""A worker's settings are one model: its fields are the flags, and the one command writer round-trips them."""

from __future__ import annotations

import inspect
import sys

import pytest

from rslp import argv, cli, registry
from rslp.launch.config import WorkerArgs
from rslp.launch.pool import PoolSettings
from rslp.worker.settings import DATA_DISK_SCRATCH, WorkerSettings, flag_names, worker_command


def _flags(parser: object) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}  # type: ignore[attr-defined]


def test_rslp_worker_and_common_worker_take_every_setting_as_a_flag_of_its_own_name() -> None:
    expected = {f"--{name}" for name in flag_names()}
    parser, _ = cli.build_parser("worker")
    assert _flags(parser) - {"-h", "--help"} == expected
    ancestor = registry.get("common", "worker")
    assert {f"--{p.name}" for p in argv.parameters(ancestor.function())} == expected


def test_the_ancestor_flags_fold_into_the_workers_own() -> None:
    settings = WorkerSettings(
        project_id="p", subscription_id="first", subscription="b,c", manage_scratch_dir_on_data_disk=True
    )
    assert settings.queue == "pubsub://p"
    assert settings.subscriptions == ["first", "b", "c"]
    assert settings.scratch_root == DATA_DISK_SCRATCH
    assert WorkerSettings(queue="local:///q.db", subscription="s", scratch_root="/fast").scratch_root == "/fast"


def test_the_ancestor_positional_form_parses_to_the_same_settings() -> None:
    """`common worker P S`, as the ancestor's launch starts it."""
    ancestor = registry.get("common", "worker")
    values = ancestor.parse_args(["P", "S", "--manage_scratch_dir_on_data_disk", "False"])
    settings = WorkerSettings.model_validate({k: v for k, v in values.items() if k != "__path__"})
    assert (settings.queue, settings.subscriptions) == ("pubsub://P", ["S"])
    assert settings.allow_diagnostics and settings.exit_on_failures  # the ancestor trusted its topic


@pytest.mark.parametrize("here", [False, True])
def test_a_written_worker_command_parses_back_to_the_settings_it_was_written_from(here: bool) -> None:
    given = {
        "queue": "local:///q.db",
        "subscription": ["a", "b"],
        "idle_timeout": 1.5,
        "lease_seconds": 30,
        "job_roots": ["gs://b/jobs", "/weka/jobs"],
        "allow_diagnostics": True,
        "time_limit": None,
    }
    command = worker_command(given, here=here)
    assert command[: 4 if here else 2] == ([sys.executable, "-m", "rslp.cli", "worker"] if here else ["rslp", "worker"])
    parser, _ = cli.build_parser("worker")
    parsed = parser.parse_args(command[4 if here else 2 :]).as_dict()
    assert WorkerSettings.model_validate(parsed) == WorkerSettings.model_validate(given)


def test_a_written_number_keeps_every_digit_and_a_whole_one_has_no_fraction() -> None:
    command = worker_command({"queue": "q", "subscription": "s", "max_lease": 1234567.5, "idle_timeout": 600.0})
    assert command[-4:] == ["--max_lease", "1234567.5", "--idle_timeout", "600"]


def test_a_setting_the_worker_does_not_have_is_never_written() -> None:
    with pytest.raises(ValueError, match="not worker settings: retry_seconds"):
        worker_command({"queue": "q", "subscription": "s", "retry_seconds": 3})


def test_a_launch_writes_its_workers_command_with_the_same_writer() -> None:
    args = WorkerArgs(queue="pubsub://p", subscription="s", idle_timeout=600, extra_args=["--allow_diagnostics"])
    assert args.command("w0") == worker_command(
        {"queue": "pubsub://p", "subscription": "s", "idle_timeout": 600, "worker_id": "w0"},
        extra=["--allow_diagnostics"],
    )


@pytest.mark.parametrize("command", ["launch", "fleet autoscale"])
def test_launch_and_autoscale_take_every_pool_setting_as_a_flag(command: str) -> None:
    parser, fn = cli.build_parser(command)
    pool_flags = {f"--{name}" for name in PoolSettings.model_fields}
    assert pool_flags <= _flags(parser)
    own = {name for name in inspect.signature(fn).parameters if name != "pool"}
    assert not own & set(PoolSettings.model_fields)  # each flag is defined once: in the pool's model or here


def test_worker_help_writes_constrained_types_in_words_on_both_entry_points() -> None:
    """``--help`` says ``int >= 0``, never pydantic's ``Annotated[...]`` or a validator's function address."""
    ancestor = registry.get("common", "worker")
    for parser in (cli.build_parser("worker")[0], ancestor._parser(ancestor.function(), named=True)):
        text = " ".join(parser.format_help().split())
        assert "Annotated" not in text and " at 0x" not in text, text
        assert "(type: int >= 0, default: 3)" in text  # --retries
        assert "(type: float >= 1, <= 600, default: 12.0)" in text  # --lease_seconds
        assert "(type: float > 0 | null, default: null)" in text  # --time_limit
        assert "(type: list[str], default: [])" in text  # --subscription, read as a,b
