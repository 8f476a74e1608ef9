"""Start and stop the official Pub/Sub emulator on a free loopback port.

Used by the test fixtures, the benchmarks and ``make emulator``. It runs the Cloud
SDK's own ``cloud-pubsub-emulator`` script (a Java process) in a new session, waits
until ``GET /`` answers ``Ok``, and stops the whole process group with SIGTERM: killing
only a wrapper would leave the Java process running. Where the SDK is missing but a
Docker engine is reachable, it falls back to the emulator image via testcontainers.

A port is checked free before the emulator starts: an emulator left running there
would answer ``Ok`` to the readiness check and be mistaken for the new one.

Run ``python -m rslp.testing.emulator [PORT]`` to keep one running in the foreground;
SIGINT, SIGTERM or SIGHUP stops it, and the Java process with it.
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
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
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


#: Tries at a fresh free port when another process took the one picked before the emulator bound it.
START_TRIES = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    """Whether something listens on (or holds) ``127.0.0.1:port``, so a server could not bind it now."""
    with socket.socket() as s:
        # As servers bind: a listener blocks this bind, a closed connection's TIME_WAIT does not.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


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
    """Run an emulator for the duration of the block; yields ``127.0.0.1:PORT``.

    With no ``port``, a free one is picked. A given ``port`` already in use raises
    :class:`EmulatorUnavailable` at once, naming it, and nothing is started.
    """
    script = find_emulator_script()
    if script is None:
        with _docker_emulator(timeout) as host:
            yield host
        return
    with tempfile.TemporaryDirectory(prefix="pubsub-emulator-") as data_dir:
        proc, chosen = start_server(
            lambda p: [str(script), "--host=127.0.0.1", f"--port={p}", f"--data-dir={data_dir}"],
            lambda p, proc: _wait_ok(f"127.0.0.1:{p}", timeout, proc),
            port,
        )
        try:
            yield f"127.0.0.1:{chosen}"
        finally:
            _stop_group(proc)


def start_server(
    command: Callable[[int], list[str]], wait: Callable[[int, subprocess.Popen[bytes]], None], port: int | None
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``command(port)`` in its own session and ``wait(port, proc)`` until it serves; returns it and its port.

    ``wait`` raises :class:`EmulatorUnavailable` if the server does not come up or
    exits. A port is checked free first: a server left running there would pass
    ``wait`` in place of the new one. With no ``port``, a free one is picked, and a
    fresh one tried if another process (a parallel test process starting its own
    server) took it between the pick and the bind, so that the server exited.
    """
    for _ in range(START_TRIES):
        chosen = port or free_port()
        if port_in_use(chosen):
            if port is not None:
                raise EmulatorUnavailable(
                    f"127.0.0.1:{port} is already in use (an emulator left running?): stop it or pick another port"
                )
            continue
        proc = subprocess.Popen(
            command(chosen), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        try:
            wait(chosen, proc)
            return proc, chosen
        except EmulatorUnavailable:
            _stop_group(proc)
            if port is not None or proc.returncode is None:
                raise
        except BaseException:
            _stop_group(proc)
            raise
    raise EmulatorUnavailable(f"no free port held for the server in {START_TRIES} tries")


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


#: The signals that stop a foreground emulator (and the server it started).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Stopped(Exception):
    """One of :data:`STOP_SIGNALS` arrived."""


def _stop(signum: int, frame: object) -> None:
    for sig in STOP_SIGNALS:  # a second signal must not cut the shutdown short
        signal.signal(sig, signal.SIG_IGN)
    raise _Stopped


def serve_until_stopped(name: str, server: AbstractContextManager[str], announce: Callable[[str], str]) -> None:
    """Run ``server`` in the foreground until SIGINT, SIGTERM or SIGHUP, then leave its block.

    Without this, SIGTERM (``kill``, a supervisor, ``make`` passing it on) ends Python
    at once: the block never exits, and a server in its own session keeps the port.
    A server that cannot start is one line on stderr, exit code 1.
    """
    for sig in STOP_SIGNALS:
        signal.signal(sig, _stop)
    try:
        with server as address:
            print(announce(address), flush=True)
            while True:
                signal.pause()
    except _Stopped:
        pass
    except EmulatorUnavailable as e:
        sys.exit(f"{name}: error: {e}")


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8085
    serve_until_stopped("pubsub emulator", running_emulator(port), lambda host: f"export PUBSUB_EMULATOR_HOST={host}")


if __name__ == "__main__":
    main()
