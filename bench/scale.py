"""Scale: what a job of N partitions costs, for N from 10 to about 100k (a continent at 10 m).

Each cost against N; medians of ``repeats`` runs unless said otherwise.

- **write-jobs**: the demo pipeline (partitions of 256 px at 10 m) over a square request
  sized for N partitions, to an embedded queue, in a fresh process: wall and CPU
  seconds (the machine is shared: CPU is the steadier figure) and that process's peak
  RSS (its own ``VmHWM``); ``floor_rss_mb`` is the same process after its imports
  and the pipeline's checks, before planning.
- **job load**: what every task pays before its work: ``Job.load`` (the header and the
  pipeline config) plus ``job.partition(pid)`` (its own record), in one process, the
  median over 50 random partitions.
- **fan-in**: every partition arrives (:mod:`rslp.pipeline.fanin`) in random order, one
  run: total seconds, and the listings made. ``old_fanin_s`` is the previous design
  (each postprocess listed every partition's output, here with a bare ``os.listdir``,
  cheaper than the real one) up to 20k; above, O(N^2) is not worth the wait.
- **status**: ``rslp status`` (``collect`` + ``render``) of the write-jobs job with every
  task marked (6 steps, one marker a task: 98% done, 1.5% failed, 0.5% dead), in a
  fresh process: wall and CPU seconds, peak RSS.

Goals (issue 10): a task's job loading within 1.5x from 10 to 100k and under 50 ms on
local disk; write-jobs under 400 MB at about 97k, with seconds per partition flat;
status under 10 s at 100k. ``python -m bench.scale`` runs it alone and rewrites its own
section at the end of bench/RESULTS.md and the plot bench/scale.png.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import REPO, child_env, print_result, scratch_dir

SIZES = (10, 1_000, 10_000, 100_000)
#: The old fan-in is O(N^2): measured up to this size only.
OLD_FANIN_MAX = 20_000
STEPS = ("create_windows", "prepare", "ingest", "materialize", "predict", "postprocess")
LOAD_SAMPLES = 50
TITLE = "7. Scale: cost against job size, 10 to 100k partitions"
PLOT = REPO / "bench" / "scale.png"
RESULTS = REPO / "bench" / "RESULTS.md"
COMMAND = "python -m bench.scale"

#: A fresh process that runs write-jobs and reports its seconds and its own peak RSS.
_WRITE_JOBS = """
import json, sys, time
from bench.harness import peak_rss_kb
from rslp.pipeline.config import load_pipeline_config
from rslp.pipeline.write_jobs import write_jobs
load_pipeline_config(sys.argv[1]).check()
floor = peak_rss_kb()
started, cpu = time.perf_counter(), time.process_time()
write_jobs(sys.argv[1], sys.argv[2], sys.argv[3])
print(json.dumps({"seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu, "floor_kb": floor,
                  "peak_kb": peak_rss_kb()}))
"""

#: A fresh process that runs rslp status and reports its seconds and its own peak RSS.
_STATUS = """
import json, sys, time
from bench.harness import peak_rss_kb
from rslp.status.model import collect
from rslp.status.render import render
started, cpu = time.perf_counter(), time.process_time()
text = render(collect(sys.argv[1]))
print(json.dumps({"seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu,
                  "peak_kb": peak_rss_kb(), "tasks_line": text.splitlines()[3]}))
"""


def request_for(n: int, folder: Path) -> Path:
    """A square WGS84 request (around 38 N, 122 W) of about ``n`` cells of 2.56 km."""
    side_km = 2.56 * math.sqrt(n)
    half_lat, half_lon = side_km / 111.0 / 2, side_km / (111.0 * math.cos(math.radians(38))) / 2
    x0, x1, y0, y1 = -122 - half_lon, -122 + half_lon, 38 - half_lat, 38 + half_lat
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    path = folder / f"request-{n}.geojson"
    path.write_text(json.dumps({"type": "Polygon", "coordinates": [ring]}))
    return path


def _child(code: str, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=child_env(), cwd=REPO, check=False
    )
    if out.returncode:
        raise RuntimeError(f"child failed ({out.returncode}): {out.stderr.strip().splitlines()[-3:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def write_jobs_cost(request: Path, folder: Path, repeats: int) -> tuple[dict[str, float], Path]:
    """Median seconds and peak RSS of write-jobs; returns the last run's job root too."""
    from rslp.pipeline.demo import DEMO_DIR, DEMO_SCENE, ensure_scene

    ensure_scene(DEMO_SCENE, DEMO_DIR / "data")  # the pipeline's checks need the demo imagery

    runs, root = [], folder
    for i in range(repeats):
        root = folder / f"job-{i}"
        runs.append(_child(_WRITE_JOBS, str(DEMO_DIR / "pipeline.yaml"), str(request), str(root)))
    return {
        "seconds": round(statistics.median(r["seconds"] for r in runs), 2),
        "cpu_s": round(statistics.median(r["cpu"] for r in runs), 2),
        "peak_rss_mb": round(statistics.median(r["peak_kb"] for r in runs) / 1024, 1),
        "floor_rss_mb": round(statistics.median(r["floor_kb"] for r in runs) / 1024, 1),
    }, root


def job_load_ms(root: Path) -> float:
    """Median milliseconds for one task's Job.load + job.partition(pid), over random partitions."""
    from rslp.pipeline.job import Job

    count = Job.load(str(root)).manifest.partition_count
    rng = random.Random(0)
    times = []
    for _ in range(LOAD_SAMPLES):
        pid = f"p{rng.randrange(count):05d}"
        started = time.perf_counter()
        job = Job.load(str(root))
        job.partition(pid)
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 2)


def fanin_cost(n: int, folder: Path) -> dict[str, float]:
    """Every partition arrives once, in random order: seconds and listings in all."""
    from upath import UPath

    from rslp.jobroot import FANIN_GROUP_SIZE
    from rslp.pipeline import fanin

    listings = 0
    real = fanin.arrived

    def counting(f: UPath) -> int:
        nonlocal listings
        listings += 1
        return real(f)

    order = list(range(n))
    random.Random(n).shuffle(order)
    root = UPath(folder / "fanin-new")
    fanin.arrived = counting  # type: ignore[assignment]
    try:
        started = time.perf_counter()
        completed = [i for i in order if fanin.arrive(root, n, i, FANIN_GROUP_SIZE)]
        seconds = time.perf_counter() - started
    finally:
        fanin.arrived = real  # type: ignore[assignment]
    if completed != [order[-1]]:
        raise RuntimeError(f"fan-in of {n}: completed by {completed}, expected only the last arrival")
    return {"fanin_s": round(seconds, 2), "fanin_listings": listings}


def old_fanin_s(n: int, folder: Path) -> float:
    """The previous design: write the partition's file, then list every partition's file."""
    out = folder / "fanin-old"
    out.mkdir()
    started = time.perf_counter()
    for i in range(n):
        (out / f"p{i:05d}.tif").touch()
        if len(os.listdir(out)) == n:
            break
    return round(time.perf_counter() - started, 2)


def mark_every_task(root: Path) -> int:
    """One marker per task, written directly (as fast as possible): 98% done, 1.5% failed, 0.5% dead."""
    from rslp.jobroot import JobRoot
    from rslp.pipeline.job import make_task

    manifest = JobRoot(root).read_manifest()
    files = 0
    for s, step in enumerate(STEPS):
        folder = root / "markers" / step
        folder.mkdir(parents=True, exist_ok=True)
        for i, pid in enumerate(manifest.partition_ids()):
            state = "dead" if (i + s) % 200 == 0 else "failed" if (i + s) % 50 == 0 else "done"
            task = make_task(manifest.job_id, str(root), step, pid)
            payload = {"task": {"partition": pid}, "state": state, "error": f"RuntimeError: failed {pid}"}
            (folder / f"{task.task_id}.{state}.json").write_text(json.dumps(payload))
            files += 1
    return files


def status_cost(root: Path, repeats: int) -> dict[str, float]:
    runs = [_child(_STATUS, str(root)) for _ in range(repeats)]
    return {
        "status_s": round(statistics.median(r["seconds"] for r in runs), 2),
        "status_cpu_s": round(statistics.median(r["cpu"] for r in runs), 2),
        "status_peak_rss_mb": round(statistics.median(r["peak_kb"] for r in runs) / 1024, 1),
    }


def measure(n: int, repeats: int, old_fanin_max: int) -> dict[str, Any]:
    """Every cost at one size."""
    with scratch_dir(f"scale-{n}") as folder:
        request = request_for(n, folder)
        write, root = write_jobs_cost(request, folder / "write", repeats if n < 50_000 else min(repeats, 2))
        from rslp.jobroot import JobRoot

        partitions = JobRoot(root).read_manifest().partition_count
        row: dict[str, Any] = {"partitions": partitions, **{f"write_jobs_{k}": v for k, v in write.items()}}
        row["write_jobs_us_per_partition"] = round(write["seconds"] / partitions * 1e6, 1)
        row["job_load_ms"] = job_load_ms(root)
        row.update(fanin_cost(partitions, folder))
        row["old_fanin_s"] = old_fanin_s(partitions, folder) if partitions <= old_fanin_max else None
        row["markers"] = mark_every_task(root)
        row.update(status_cost(root, repeats))
    return row


def plot(rows: dict[str, dict[str, Any]], path: Path = PLOT) -> None:
    """Cost against N on log-log axes: time (left), peak memory (right)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    ns = [r["partitions"] for r in rows.values()]
    series = [
        ("write-jobs (s)", "write_jobs_seconds", 1.0),
        ("one task's job load (s)", "job_load_ms", 1e-3),
        ("fan-in, whole job (s)", "fanin_s", 1.0),
        ("old fan-in, whole job (s)", "old_fanin_s", 1.0),
        ("rslp status (s)", "status_s", 1.0),
    ]
    for label, key, scale in series:
        points = [(n, r[key] * scale) for n, r in zip(ns, rows.values(), strict=True) if r.get(key)]
        if points:
            left.plot(*zip(*points, strict=True), marker="o", label=label)
    left.set(xscale="log", yscale="log", xlabel="partitions (N)", ylabel="seconds", title="time against job size")
    left.legend(fontsize=8)
    for label, key in (("write-jobs peak RSS", "write_jobs_peak_rss_mb"), ("status peak RSS", "status_peak_rss_mb")):
        right.plot(ns, [r[key] for r in rows.values()], marker="o", label=label)
    right.axhline(400, color="grey", linestyle="--", linewidth=0.8, label="400 MB goal")
    right.set(xscale="log", xlabel="partitions (N)", ylabel="MB", title="peak memory against job size")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def run(sizes: tuple[int, ...] = SIZES, repeats: int = 3, old_fanin_max: int = OLD_FANIN_MAX) -> dict[str, Any]:
    rows = {}
    for n in sizes:
        print(f"   scale: N = {n}", file=sys.stderr, flush=True)
        rows[f"n_{n}"] = measure(n, repeats, old_fanin_max)
    first, last = rows[f"n_{sizes[0]}"], rows[f"n_{sizes[-1]}"]
    load_ratio = last["job_load_ms"] / first["job_load_ms"]
    marginal = _marginal_us(list(rows.values()))
    out: dict[str, Any] = {**rows, "job_load_ratio": round(load_ratio, 2), "repeats": repeats}
    out["write_jobs_marginal_us_per_partition"] = marginal
    out["summary"] = (
        f"N = {last['partitions']}: write-jobs {last['write_jobs_seconds']:g} s, "
        f"{last['write_jobs_peak_rss_mb']:g} MB; "
        f"job load {last['job_load_ms']:g} ms ({load_ratio:.2f}x N = {first['partitions']}); "
        f"fan-in {last['fanin_s']:g} s for the job; status {last['status_s']:g} s"
    )
    out["goal"] = (
        "job load within 1.5x from smallest to largest N and < 50 ms; write-jobs < 400 MB and linear (the cost of "
        "an extra partition at the largest step no more than 2x the step before); status < 10 s"
    )
    out["goal_met"] = (
        load_ratio <= 1.5
        and last["job_load_ms"] < 50
        and last["write_jobs_peak_rss_mb"] < 400
        and (len(marginal) < 2 or marginal[-1] <= 2 * marginal[-2])
        and last["status_s"] < 10
    )
    return out


def _marginal_us(rows: list[dict[str, Any]]) -> list[float]:
    """write-jobs CPU microseconds per extra partition between consecutive sizes: flat when it is linear."""
    return [
        round((b["write_jobs_cpu_s"] - a["write_jobs_cpu_s"]) / (b["partitions"] - a["partitions"]) * 1e6, 1)
        for a, b in itertools.pairwise(rows)
    ]


def section(result: dict[str, Any], seconds: float) -> str:
    """This benchmark's section of RESULTS.md: the table against N, the goal, the plot."""
    rows = [v for k, v in result.items() if k.startswith("n_")]
    cols = [
        ("partitions", "partitions"),
        ("write-jobs s", "write_jobs_seconds"),
        ("write-jobs CPU s", "write_jobs_cpu_s"),
        ("write-jobs µs/partition", "write_jobs_us_per_partition"),
        ("write-jobs peak MB", "write_jobs_peak_rss_mb"),
        ("(import floor MB)", "write_jobs_floor_rss_mb"),
        ("task job load ms", "job_load_ms"),
        ("fan-in s (job)", "fanin_s"),
        ("fan-in listings", "fanin_listings"),
        ("old fan-in s", "old_fanin_s"),
        ("markers", "markers"),
        ("status s", "status_s"),
        ("status CPU s", "status_cpu_s"),
        ("status peak MB", "status_peak_rss_mb"),
    ]
    lines = [
        f"## {TITLE}",
        "",
        f"`{COMMAND}` ({seconds:.0f} s in this run, {time.strftime('%Y-%m-%d %H:%M %Z')}, "
        f"load average before/after in the notes below; the machine is shared, 2 cores)",
        "",
        (__doc__ or "").strip(),
        "",
        "| " + " | ".join(c for c, _ in cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for r in rows:
        lines.append("| " + " | ".join("-" if r.get(k) is None else f"{r[k]:g}" for _, k in cols) + " |")
    lines += [
        "",
        f"Summary: {result['summary']}.",
        f"write-jobs CPU µs per extra partition between consecutive sizes: "
        f"{result['write_jobs_marginal_us_per_partition']}.",
        f"Goal: {result['goal']}. Met: {'yes' if result['goal_met'] else '**no**'}.",
        "",
        f"![cost against N]({PLOT.name})",
    ]
    return "\n".join(lines) + "\n"


def write_section(text: str, path: Path = RESULTS) -> None:
    """Replace this benchmark's section at the end of RESULTS.md (or append it)."""
    old = path.read_text() if path.exists() else ""
    head = old.split(f"\n## {TITLE}\n", 1)[0].rstrip("\n")
    path.write_text(f"{head}\n\n{text}")


def main() -> None:
    loads = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    started = time.monotonic()
    result = run()
    seconds = time.monotonic() - started
    plot({k: v for k, v in result.items() if k.startswith("n_")})
    after = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    write_section(section(result, seconds) + f"\nLoad average (1/5/15 min) before / after: {loads} / {after}.\n")
    print_result("scale", result)


if __name__ == "__main__":
    main()
