"""The task process imports the pipeline steps' code while it waits for its first task (rslp/worker/runner.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CHILD = """
import json, sys
from rslp import registry
from rslp.worker.runner import PRELOADED_PROJECT, _preload

class Pipe:
    def poll(self, timeout):
        return {waiting}

_preload(Pipe(), registry.message_modules(PRELOADED_PROJECT))
print(json.dumps({{m: m in sys.modules for m in ("rslp.pipeline.steps", "rslearn.main", "torch")}}))
"""


def preloaded(task_waiting: bool) -> dict[str, bool]:
    """Which modules a fresh process holds after the preload (in a fresh interpreter: nothing imported before)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled"}
    code = CHILD.format(waiting=task_waiting)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_an_idle_task_process_imports_the_steps_and_their_rslearn_code_but_not_torch() -> None:
    assert preloaded(task_waiting=False) == {"rslp.pipeline.steps": True, "rslearn.main": True, "torch": False}


def test_a_task_already_waiting_is_not_held_back_by_the_preload() -> None:
    assert preloaded(task_waiting=True) == {"rslp.pipeline.steps": False, "rslearn.main": False, "torch": False}
