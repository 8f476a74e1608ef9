"""Start and stop the official Pub/Sub emulator on a free loopback port.

Used by the test fixtures, the benchmarks and ``make emulator``. It runs the Cloud
SDK's own ``cloud-pubsub-emulator`` script (a Java process) in a new session, waits
until ``GET /`` answers ``Ok``, and stops the whole process group with SIGTERM: killing
only a wrapper would leave the Java process running. Where the SDK is missing but a
Docker engine is reachable, it falls back to the emulator image via testcontainers.

Run ``python -m rslp.testing.emulator [PORT]`` to keep one running in the foreground.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path


class EmulatorUnavailable(RuntimeError):
    """Neither the Cloud SDK's emulator nor a Docker engine is available here."""


def find_emulator_script() -> Path | None:
    """The SDK's ``cloud-pubsub-emulator`` script, found from ``gcloud``'s real path."""
    candidates = []
    gcloud = shutil.which("gcloud")
    if gcloud:
        candidates.append(Path(os.path.realpath(gcloud)).parent.parent)
    candidates += [Path("/usr/lib/google-cloud-sdk"), Path("/google-cloud-sdk")]
    for sdk in candidates:
        script = sdk / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"
        if script.exists():
            return script
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ok(host: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise EmulatorUnavailable(f"the Pub/Sub emulator exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://{host}/", timeout=1) as r:
                if r.read().strip() == b"Ok":
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise EmulatorUnavailable(f"the Pub/Sub emulator at {host} did not answer within {timeout:.0f}s")


@contextmanager
def running_emulator(port: int | None = None, timeout: float = 60.0) -> Iterator[str]:
    """Run an emulator for the duration of the block; yields ``127.0.0.1:PORT``."""
    script = find_emulator_script()
    if script is None:
        with _docker_emulator(timeout) as host:
            yield host
        return
    port = port or free_port()
    host = f"127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="pubsub-emulator-") as data_dir:
        proc = subprocess.Popen(
            [str(script), "--host=127.0.0.1", f"--port={port}", f"--data-dir={data_dir}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            _wait_ok(host, timeout, proc)
            yield host
        finally:
            _stop_group(proc)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextmanager
def _docker_emulator(timeout: float) -> Iterator[str]:
    try:
        from testcontainers.google import PubSubContainer  # type: ignore[import-untyped]

        container = PubSubContainer()
        container.start()
    except Exception as e:
        raise EmulatorUnavailable(
            "no Pub/Sub emulator: the Cloud SDK's cloud-pubsub-emulator is not installed "
            f"and testcontainers could not start the image ({e.__class__.__name__})"
        ) from e
    try:
        host = container.get_pubsub_emulator_host()
        _wait_ok(host, timeout)
        yield host
    finally:
        container.stop()


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8085
    with running_emulator(port) as host:
        print(f"export PUBSUB_EMULATOR_HOST={host}", flush=True)
        with suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
