"""Start and stop a Google Cloud Storage emulator on a free loopback port.

Used by the tests and benchmarks that put a job root on gs://. It runs the
``gcp-storage-emulator`` package's server (in memory) in a child process in a new
session, with the bucket created, waits until the JSON API answers, and points this
process and its children at it for the duration of the block:

- ``STORAGE_EMULATOR_HOST`` makes gcsfs (and google-cloud-storage) talk to it, with
  no credentials;
- ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` stops recent gcsfs probing the bucket
  type over gRPC, which the emulator does not serve: each probe waits 60 s.

On leaving the block the emulator's process group gets SIGTERM (SIGKILL if it lingers)
and the environment is restored; an emulator whose parent was killed before it could
do that exits by itself within a second, so nothing outlives the test that started it.

Run ``python -m rslp.testing.gcs_emulator [PORT]`` to keep one running in the foreground.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from rslp.testing.emulator import EmulatorUnavailable, _stop_group, serve_until_stopped, start_server

#: The bucket created in every emulator this module starts.
BUCKET = "rslp-test"


def _wait_bucket(url: str, bucket: str, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    """Until ``GET /storage/v1/b/BUCKET`` names the bucket (the emulator creates it on start)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmulatorUnavailable(f"the GCS emulator exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/storage/v1/b/{bucket}", timeout=1) as r:
                if json.loads(r.read()).get("name") == bucket:
                    return
        except (OSError, ValueError, urllib.error.HTTPError):
            pass
        time.sleep(0.1)
    raise EmulatorUnavailable(f"the GCS emulator at {url} did not answer within {timeout:.0f}s")


@contextmanager
def running_gcs_emulator(bucket: str = BUCKET, port: int | None = None, timeout: float = 60.0) -> Iterator[str]:
    """Run a GCS emulator holding ``bucket`` for the block; yields its URL ``http://127.0.0.1:PORT``.

    With no ``port``, a free one is picked; a given ``port`` already in use raises
    :class:`EmulatorUnavailable` at once.
    """
    proc, chosen = start_server(
        lambda p: [sys.executable, "-m", "rslp.testing.gcs_emulator", "--serve", str(p), bucket],
        lambda p, proc: _wait_bucket(f"http://127.0.0.1:{p}", bucket, timeout, proc),
        port,
    )
    url = f"http://127.0.0.1:{chosen}"
    saved = {k: os.environ.get(k) for k in ("STORAGE_EMULATOR_HOST", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT")}
    try:
        os.environ["STORAGE_EMULATOR_HOST"] = url
        os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
        yield url
    finally:
        _stop_group(proc)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _exit_with_parent(parent: int) -> None:
    """Exit once the process that started this emulator is gone (killed before it could stop us)."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


def serve(port: int, bucket: str) -> None:
    """Run the emulator's server in this process until it is killed.

    In memory, the emulator keeps its metadata in dicts, but it also rewrites a JSON
    copy of all of it on every write, which nothing reads back: a write then costs
    O(objects), and 12,000 markers took hours. That copy is skipped here.
    """
    import logging

    from gcp_storage_emulator.server import create_server
    from gcp_storage_emulator.storage import Storage

    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    logging.getLogger("gcp_storage_emulator").setLevel(logging.CRITICAL)
    Storage._write_config_to_file = lambda self: None  # type: ignore[method-assign]
    create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket).run()


def main() -> None:
    if sys.argv[1:2] == ["--serve"]:
        serve(int(sys.argv[2]), sys.argv[3])
        return
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9023
    serve_until_stopped(
        "gcs emulator",
        running_gcs_emulator(port=port),
        lambda url: (
            f"export STORAGE_EMULATOR_HOST={url} GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false\nbucket: gs://{BUCKET}"
        ),
    )


if __name__ == "__main__":
    main()
