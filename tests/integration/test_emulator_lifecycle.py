"""The emulators that tests and `make emulator` start: stopped by SIGTERM, never mistaken for one already there."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from rslp.testing import emulator
from rslp.testing.emulator import EmulatorUnavailable, find_emulator_script, free_port, port_in_use, running_emulator
from rslp.testing.gcs_emulator import running_gcs_emulator

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def sdk_emulator() -> None:
    """These tests are about the Cloud SDK's Java emulator (not the Docker fallback)."""
    if find_emulator_script() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must run the Pub/Sub emulator tests, but the Cloud SDK's emulator is not installed")
        pytest.skip("the Cloud SDK's cloud-pubsub-emulator is not installed")


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port something else listens on, as an emulator left running would."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def _foreground(port: int) -> subprocess.Popen[str]:
    """``python -m rslp.testing.emulator PORT``, as `make emulator` runs it."""
    return subprocess.Popen(
        [sys.executable, "-m", "rslp.testing.emulator", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def _answers(host: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}/", timeout=2) as r:
            return bool(r.read().strip() == b"Ok")
    except OSError:
        return False


def test_sigterm_to_the_foreground_emulator_stops_java_and_frees_its_port(sdk_emulator: None) -> None:
    port = free_port()
    proc = _foreground(port)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == f"export PUBSUB_EMULATOR_HOST=127.0.0.1:{port}"
        assert _answers(f"127.0.0.1:{port}")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    # The Java process ran in its own session: only its own stop frees the port.
    deadline = time.monotonic() + 15
    while port_in_use(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not port_in_use(port), "the Java emulator outlived the SIGTERM that stopped its parent"


def test_the_foreground_emulator_on_a_port_in_use_says_so_in_one_line_and_starts_nothing(
    sdk_emulator: None, held_port: int
) -> None:
    proc = _foreground(held_port)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert out == ""
    assert err.strip().splitlines() == [
        f"pubsub emulator: error: 127.0.0.1:{held_port} is already in use (an emulator left running?): "
        "stop it or pick another port"
    ]


def test_a_picked_port_taken_before_the_start_is_passed_over(
    sdk_emulator: None, held_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A parallel test process can take the port between the pick and the start: another one is used."""
    picks = iter([held_port, free_port()])
    monkeypatch.setattr(emulator, "free_port", lambda: next(picks))
    with running_emulator() as host:
        assert host != f"127.0.0.1:{held_port}"
        assert _answers(host)


def test_the_gcs_emulator_refuses_a_port_in_use(held_port: int) -> None:
    with (
        pytest.raises(EmulatorUnavailable, match=f"127.0.0.1:{held_port} is already in use"),
        running_gcs_emulator(port=held_port),
    ):
        pass
