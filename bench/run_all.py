"""``make bench``: run every benchmark against one emulator and rewrite bench/RESULTS.md.

Each benchmark module measures the fleet against a baseline in the same run and
returns its figures (medians of several runs), a one-line summary and whether its
goal is met. This module adds what a reader needs to trust the figures: the machine,
its load before and after (the machine may be shared), the exact command, the
versions, and, for a missed goal, the profile its module provides.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench.harness import REPO, emulator
from rslp.testing.emulator import find_emulator_script

#: (module, title) in the issue's order.
BENCHMARKS = [
    ("enqueue", "1. Enqueue: 100,000 tasks to the emulator"),
    ("overhead", "2. Per-task overhead: no-op tasks through one worker"),
    ("fleet", "3. Fleet efficiency: 200 x 0.5 s tasks over 4 workers"),
    ("cold_start", "4. Cold start: spawn to first task pulled"),
    ("pipeline", "5. Pipeline: the demo job with one worker vs the floor"),
    ("drain", "6. Drain and exit: idle workers leave"),
    ("scale", "7. Scale: cost against job size, 10 to 100k partitions"),
    ("local_queue", "8. Embedded queue: pull+ack with 60k waiting vs 1k"),
    ("preferred", "9. Preferred pull: a worker on the last of 3 subscriptions vs one"),
    ("pipeline_queues", "10. Pipeline on Pub/Sub: 16 partitions, 2 workers, emulator vs embedded"),
    ("combine", "11. Combine at scale: peak RSS and time against partitions"),
    ("status_gcs", "12. Status on object storage: a big job on the GCS emulator"),
    ("dashboard", "13. Dashboard: page load, refresh and server memory at 100 / 10k / 100k partitions"),
    ("worker_rate", "14. Worker rate: demo create_windows tasks one worker finishes in 45 s, new vs 175f73b"),
    ("roundtrips", "15. Storage round trips per task per step: local disk and GCS emulator, 175f73b vs new"),
    ("task_cost", "16. Task cost: where a create_windows task's time goes, 175f73b vs new"),
    ("publish_rerun", "18. Resumed write-jobs: messages queued after a kill partway and a rerun, vs a clean run"),
]
RESULTS = REPO / "bench" / "RESULTS.md"
COMMAND = "make bench  (= WANDB_MODE=disabled .venv/bin/python -m bench.run_all)"


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    meminfo = Path("/proc/meminfo").read_text().split()
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")), "?")
    script = find_emulator_script()
    jars = sorted(p.name for p in (script.parent.parent / "lib").glob("cloud-pubsub-emulator-*.jar")) if script else []
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "nproc": str(os.cpu_count()),
        "ram": f"{int(meminfo[meminfo.index('MemTotal:') + 1]) / 2**20:.1f} GiB",
        "cpu": model,
        "os": platform.platform(),
        "python": platform.python_version(),
        "google-cloud-pubsub": importlib.metadata.version("google-cloud-pubsub"),
        "emulator": jars[0].removesuffix(".jar") if jars else "testcontainers image",
        "commit": (commit.stdout.strip() or "?") + " (plus uncommitted changes)",
    }


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run_one(name: str) -> tuple[dict[str, Any], float]:
    """Run ``bench.<name>``; a failure is recorded, not raised, so the others still run."""
    module = importlib.import_module(f"bench.{name}")
    started = time.monotonic()
    try:
        result: dict[str, Any] = module.run()
    except Exception as e:  # noqa: BLE001 - the report says what failed and the rest goes on
        result = {"failed": f"{e.__class__.__name__}: {e}", "traceback": traceback.format_exc(limit=-6)}
    if result.get("goal_met") is False and hasattr(module, "profile"):
        result["profile"] = module.profile()
    return result, time.monotonic() - started


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for k, v in d.items():
        if k in ("summary", "goal", "goal_met", "profile", "traceback"):
            continue
        key = f"{prefix}{k}"
        rows += _flatten(v, f"{key}.") if isinstance(v, dict) else [(key, v)]
    return rows


def _met(result: dict[str, Any]) -> str:
    if "failed" in result:
        return "**failed**"
    return "yes" if result.get("goal_met") else "**no**"


def render(info: dict[str, str], results: dict[str, tuple[dict[str, Any], float]], total: float, loads: str) -> str:
    """RESULTS.md: machine, command, summary table, then each benchmark's figures."""
    lines = [
        "# Benchmark results",
        "",
        f"Written by `{COMMAND}`; do not edit by hand. The whole run took {total / 60:.1f} min.",
        "Every figure is a median over the runs named `repeats`; each ratio compares against a baseline",
        "measured in the same run.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in info.items()),
        f"| load average (1/5/15 min) before / after | {loads} |",
        "",
        "## Summary",
        "",
        "| Benchmark | Result | Goal | Met |",
        "|---|---|---|---|",
    ]
    for name, title in BENCHMARKS:
        result, _ = results[name]
        summary = result.get("summary") or result.get("failed", "")
        lines.append(f"| {title} | {summary} | {result.get('goal', '')} | {_met(result)} |")
    for name, title in BENCHMARKS:
        result, seconds = results[name]
        module = importlib.import_module(f"bench.{name}")
        lines += ["", f"## {title}", "", f"`python -m bench.{name}` ({seconds:.0f} s in this run)", ""]
        lines += [(module.__doc__ or "").strip(), ""]
        if "failed" in result:
            lines += [f"**Failed:** {result['failed']}", "", "```text", result["traceback"].rstrip(), "```"]
            continue
        if hasattr(module, "markdown"):  # a benchmark with tables of its own
            lines += [*module.markdown(result), "", f"Summary: {result['summary']}."]
            lines += [f"Goal: {result['goal']}. Met: {_met(result)}."]
        else:
            lines += ["| Figure | Value |", "|---|---|"]
            lines += [f"| {k} | {json.dumps(v) if isinstance(v, list) else v} |" for k, v in _flatten(result)]
            lines += [f"| goal | {result['goal']} |", f"| goal met | {_met(result)} |"]
        if "profile" in result:
            lines += ["", "Goal missed; where the time goes (pyinstrument):", "", "```text"]
            lines += [result["profile"].strip("\n").rstrip(), "```"]
    return "\n".join(lines) + "\n"


def main() -> int:
    os.environ.setdefault("WANDB_MODE", "disabled")
    started = time.monotonic()
    before = load()
    info = machine()
    results: dict[str, tuple[dict[str, Any], float]] = {}
    with emulator():
        for name, title in BENCHMARKS:
            print(f"== {title}", file=sys.stderr, flush=True)
            results[name] = run_one(name)
            result, seconds = results[name]
            print(f"   {result.get('summary') or result.get('failed')} ({seconds:.0f} s)", file=sys.stderr, flush=True)
    total = time.monotonic() - started
    RESULTS.write_text(render(info, results, total, f"{before} / {load()}"))
    print(f"wrote {RESULTS} in {total / 60:.1f} min", file=sys.stderr)
    return 0 if all("failed" not in r for r, _ in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
