"""How the task process is started: forked where that is safe, spawned elsewhere (rslp/worker/runner.py).

Each case runs in a fresh interpreter: the test process itself has threads (pytest-xdist's)
and gRPC loaded, so it always spawns.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def fresh(code: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter; it prints one JSON object last."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_one_thread_without_grpc_forks_another_thread_or_grpc_spawns() -> None:
    code = """
import json, threading
from rslp.worker.runner import start_method
alone = start_method()
stop = threading.Event()
thread = threading.Thread(target=stop.wait); thread.start()
with_thread = start_method()
stop.set(); thread.join()
import grpc
print(json.dumps({"alone": alone, "with_thread": with_thread, "grpc": start_method()}))
"""
    assert fresh(code) == {"alone": "fork", "with_thread": "spawn", "grpc": "spawn"}


def test_a_forked_task_process_runs_tasks_and_dies_at_the_first_sigterm_despite_the_workers_handler(
    tmp_path: Path,
) -> None:
    """The worker's SIGTERM handler (a flag) is inherited by a fork; stop() must not wait 2 s for SIGKILL."""
    code = f"""
import json, os, signal, threading, time
from rslp.task import Task
from rslp.worker.runner import TaskRunner
signal.signal(signal.SIGTERM, lambda *_: None)  # what the worker's Shutdown installs
runner = TaskRunner()
runner.start()
pid = runner._proc.pid
forked = open(f"/proc/{{pid}}/cmdline").read() == open("/proc/self/cmdline").read()
task = Task(project="common", workflow="write_file", args=[{str(tmp_path / "out")!r}, "x"])
ok = runner.run(task, 60, {str(tmp_path)!r}, threading.Event())
begun = time.monotonic()
runner.stop()
print(json.dumps({{"forked": forked, "kind": ok.kind, "stop_s": time.monotonic() - begun}}))
"""
    result = fresh(code)
    assert result["forked"] is True and result["kind"] == "ok"
    assert (tmp_path / "out").read_text() == "x"
    assert isinstance(result["stop_s"], float) and result["stop_s"] < 1.5
