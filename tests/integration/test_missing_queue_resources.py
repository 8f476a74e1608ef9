"""A missing queue, subscription or topic: one line that names it and the command that creates it, exit 4.

Each command runs as a user runs it (a subprocess of the real CLI) on both backends,
and the command the error prints is then run as printed and must fix the problem.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from rslp.common.worker import write_jobs
from rslp.errors import ExitCode, QueueResourceError
from rslp.queue import Outgoing, open_queue
from rslp.testing.emulator import free_port
from tests.conftest import PROJECT, Backend

REPO = Path(__file__).resolve().parents[2]
#: Generous: a CLI start-up is about a second here, several on a loaded machine.
CEILING = 120


def rslp(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``rslp ARGS`` as a user types it (the console script's module, this checkout first on the path)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "rslp.cli", *args], capture_output=True, text=True, env=full_env, timeout=CEILING
    )


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a failed command says (a worker may log its start first: at most one line more)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr and 1 <= len(lines) <= 2, result.stderr
    return lines[-1]


def printed_command(line: str) -> list[str]:
    """The command after ``create it with:`` in an error line, as argv."""
    match = re.search(r"create it with: (rslp .*)$", line)
    assert match, line
    return shlex.split(match.group(1))


QUEUE_COMMANDS = {
    "worker": ["worker", "--idle_timeout", "1"],
    "dlq list": ["dlq", "list"],
    "dlq replay": ["dlq", "replay", "--all"],
}


@pytest.mark.parametrize("command", QUEUE_COMMANDS)
def test_a_missing_subscription_names_itself_and_the_command_that_creates_it(
    backend: Backend, command: str, topic: str
) -> None:
    if backend.name == "local":  # an embedded queue that exists but lacks the subscription
        backend.open().setup("other", "other")
    args = QUEUE_COMMANDS[command] + ["--queue", backend.url, "--subscription", topic]
    result = rslp(*args)
    assert result.returncode == ExitCode.PERMANENT_QUEUE_ERROR
    line = error_line(result)
    assert f"no subscription '{topic}" in line, line  # or its dead letters', for dlq
    fix = printed_command(line)
    assert rslp(*fix[1:]).returncode == ExitCode.OK
    assert rslp(*args).returncode == ExitCode.OK


@pytest.mark.parametrize("command", QUEUE_COMMANDS)
def test_a_typod_embedded_queue_path_is_no_such_queue_and_is_not_created(command: str, tmp_path: Path) -> None:
    path = tmp_path / "typo" / "queue.db"
    result = rslp(*QUEUE_COMMANDS[command], "--queue", f"local://{path}", "--subscription", "sub")
    assert result.returncode == ExitCode.PERMANENT_QUEUE_ERROR
    assert f"no such queue: {path}" in error_line(result)
    assert not path.parent.exists()


def test_the_ancestor_worker_command_names_a_missing_subscription(emulator_host: str, topic: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rslp.main", "common", "worker", "--project_id", PROJECT, "--subscription_id", topic],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=CEILING,
    )
    assert result.returncode == ExitCode.PERMANENT_QUEUE_ERROR
    assert f"no subscription '{topic}' in project {PROJECT}" in error_line(result)


def test_publishing_to_a_missing_topic_names_it_and_the_command_that_creates_it(emulator_host: str) -> None:
    with pytest.raises(QueueResourceError) as e:
        write_jobs(PROJECT, "missing-topic", "common", "noop", [[]])
    assert f"no topic 'missing-topic' in project {PROJECT}" in str(e.value)
    assert f"rslp setup --queue pubsub://{PROJECT} --topics missing-topic" in str(e.value)


def test_publishing_to_an_embedded_queue_topic_no_subscription_reads_is_refused(tmp_path: Path) -> None:
    url = f"local://{tmp_path / 'q.db'}"
    with open_queue(url, create=True) as queue:
        with pytest.raises(QueueResourceError) as e:
            queue.publish("missing-topic", [Outgoing(b"lost?")])
        line = str(e.value)
        assert f"no topic 'missing-topic' in {tmp_path / 'q.db'}" in line
    fix = printed_command(line)
    assert rslp(*fix[1:]).returncode == 0, fix  # the printed command makes the topic and its subscription
    with open_queue(url) as queue:
        queue.publish("missing-topic", [Outgoing(b"kept")])
        (message,) = queue.pull("missing-topic", lease_seconds=10, max_messages=10)  # the refused one was not kept
        assert message.data == b"kept"


def test_write_jobs_names_an_emulator_that_does_not_answer_and_writes_nothing(tmp_path: Path) -> None:
    demo = REPO / "tasks" / "demo"
    job_root = tmp_path / "job"
    result = rslp(
        "write-jobs",
        *("--config", str(demo / "pipeline.yaml"), "--request", str(demo / "request.geojson")),
        *("--job_root", str(job_root), "--queue", "pubsub://nowhere"),
        env={"PUBSUB_EMULATOR_HOST": f"127.0.0.1:{free_port()}"},
    )
    assert result.returncode == ExitCode.PERMANENT_QUEUE_ERROR
    assert "queue pubsub://nowhere: the emulator at 127.0.0.1:" in error_line(result)
    assert not job_root.exists()


def test_a_mistyped_subscription_is_answered_with_the_one_that_exists(backend: Backend, topic: str) -> None:
    """Not with a setup command that would make a wrong topic (`rslp setup --topics demo-cpuu`)."""
    with backend.open() as q:
        q.setup(topic, topic)
        with pytest.raises(QueueResourceError, match=rf"no subscription '{topic}x'.*did you mean '{topic}'\?") as e:
            q.topic_of(f"{topic}x")
    assert str(e.value).index("did you mean") < str(e.value).index("rslp setup")  # the setup only for a new name
