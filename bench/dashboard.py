"""Dashboard: page load, refresh and server memory at 100, 10k and 100k partitions.

Each job is made by the scale benchmark's generator (:mod:`bench.scale`: write-jobs of
the demo pipeline over a square request, then one marker per task: 98% done, 1.5%
failed, 0.5% dead). ``rslp dashboard`` serves it from a fresh process, and a real
headless Chromium (/usr/bin/chromium, driven by Playwright) opens the page.

- **first read**: from spawning ``rslp dashboard`` until its view is ready (imports,
  the first ``rslp status`` read and the map's layout); ``read_s`` is one background
  read (the view's ``refresh_seconds``, median of the reads seen).
- **answer**: one ``GET /api/view`` (gzip), the median of 20: what a page waits for at
  each poll; ``view_kb`` / ``layout_kb`` the bytes sent (the layout once per page).
- **page load**: a new tab, from navigation until the page has drawn the view
  (steps, map, throughput, tables): median of ``repeats``.
- **refresh**: in the open page, one poll's fetch, parse and redraw: median of ``repeats``.
- **memory**: the server's RSS after the page loads; its peak (VmHWM) after three
  more background reads, and again after three more (``growth``, their ratio: bounded
  memory means a peak that stops growing once the reads repeat).

Goal: the page answers (``GET /api/view``) and loads in under 2 s at 100k partitions,
and the server's peak memory does not grow from one set of three reads to the next (under 5%). Run alone with
``python -m bench.dashboard`` (it adds or replaces its own section of bench/RESULTS.md
and leaves the others alone); the machine is shared (2 cores), so figures carry its load.
"""

from __future__ import annotations

import http.client
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import REPO, child_env, print_result, scratch_dir
from bench.scale import mark_every_task, request_for
from rslp.testing.chromium import CHROMIUM, CHROMIUM_ARGS

SIZES = (100, 10_000, 100_000)
TITLE = "13. Dashboard: page load, refresh and server memory at 100 / 10k / 100k partitions"
RESULTS = REPO / "bench" / "RESULTS.md"
COMMAND = "python -m bench.dashboard"
#: One poll of the page, timed inside it: what the page does every few seconds.
REFRESH = """async () => {
  const started = performance.now();
  const view = await (await fetch("api/view", { cache: "no-store" })).json();
  await renderJob(view);
  return performance.now() - started;
}"""


def _proc_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


def _get(port: int, path: str) -> tuple[float, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.perf_counter()
    conn.request("GET", path, headers={"Accept-Encoding": "gzip"})
    body = conn.getresponse().read()
    seconds = time.perf_counter() - started
    conn.close()
    return seconds, body


def _view(port: int) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/api/view")
    view: dict[str, Any] = json.loads(conn.getresponse().read())
    conn.close()
    return view


def _wait_for_reads(port: int, count: int, timeout: float) -> list[float]:
    """Wait until the server has finished ``count`` more background reads; their seconds."""
    seen: list[float] = []
    last = _view(port).get("time")
    deadline = time.monotonic() + timeout
    while len(seen) < count and time.monotonic() < deadline:
        view = _view(port)
        if view.get("time") != last:
            last = view["time"]
            seen.append(float(view["refresh_seconds"]))
        time.sleep(0.2)
    return seen


def measure(n: int, repeats: int, browser: Any) -> dict[str, Any]:
    """Every figure at one size."""
    from rslp.jobroot import JobRoot
    from rslp.pipeline.demo import DEMO_DIR, DEMO_SCENE, ensure_scene
    from rslp.pipeline.write_jobs import write_jobs

    ensure_scene(DEMO_SCENE, DEMO_DIR / "data")
    with scratch_dir(f"dashboard-{n}") as folder:
        root = folder / "job"
        request, queue = str(request_for(n, folder)), f"local://{folder}/queue.db"
        write_jobs(str(DEMO_DIR / "pipeline.yaml"), request, str(root), queue=queue)
        markers = mark_every_task(root)
        partitions = JobRoot(root).read_manifest().partition_count
        started = time.perf_counter()
        server = subprocess.Popen(
            [sys.executable, "-m", "rslp.cli", "dashboard", "--job_root", str(root), "--interval", "2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=child_env(),
            cwd=REPO,
        )
        try:
            assert server.stdout is not None
            url = server.stdout.readline().split()[4]
            port = int(url.rsplit(":", 1)[1].strip("/"))
            while _view(port).get("kind") != "job":
                time.sleep(0.05)
            first_read = time.perf_counter() - started
            answers, view_bytes = [], b""
            for _ in range(20):
                seconds, view_bytes = _get(port, "/api/view")
                answers.append(seconds)
            layout_bytes = _get(port, "/api/layout")[1]
            loads, refreshes = [], []
            for _ in range(repeats):
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                errors: list[str] = []
                page.on("console", lambda m, errors=errors: errors.append(m.text) if m.type == "error" else None)
                started = time.perf_counter()
                page.goto(url)
                page.wait_for_function("() => document.body.dataset.updated !== undefined", timeout=120_000)
                loads.append(time.perf_counter() - started)
                refreshes.append(page.evaluate(REFRESH) / 1000)
                page.close()
                if errors:
                    raise RuntimeError(f"console errors at N = {n}: {errors[:3]}")
            rss = _proc_kb(server.pid, "VmRSS")
            reads = _wait_for_reads(port, 3, timeout=300)
            peak_before = _proc_kb(server.pid, "VmHWM")
            reads += _wait_for_reads(port, 3, timeout=300)
            peak_after = _proc_kb(server.pid, "VmHWM")
        finally:
            server.terminate()
            server.wait(timeout=30)
    return {
        "partitions": partitions,
        "markers": markers,
        "first_read_s": round(first_read, 2),
        "read_s": round(statistics.median(reads), 2) if reads else None,
        "answer_ms": round(statistics.median(answers) * 1000, 2),
        "view_kb": round(len(view_bytes) / 1024, 1),
        "layout_kb": round(len(layout_bytes) / 1024, 1),
        "page_load_s": round(statistics.median(loads), 3),
        "refresh_s": round(statistics.median(refreshes), 3),
        "rss_mb": round(rss / 1024, 1),
        "peak_rss_mb": round(peak_before / 1024, 1),
        "peak_after_3_more_reads_mb": round(peak_after / 1024, 1),
        "growth": round(peak_after / peak_before, 3),
    }


def run(sizes: tuple[int, ...] = SIZES, repeats: int = 5, browser: Any = None) -> dict[str, Any]:
    """Every figure at each size; ``browser``: a Chromium already launched by Playwright (default: one of its own)."""
    if browser is None:
        from playwright.sync_api import sync_playwright

        if not CHROMIUM.exists():
            raise RuntimeError(f"{CHROMIUM} is missing (apt-get install chromium)")
        with sync_playwright() as p:
            chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                return run(sizes, repeats, chromium)
            finally:
                chromium.close()
    rows: dict[str, Any] = {}
    for n in sizes:
        print(f"   dashboard: N = {n}", file=sys.stderr, flush=True)
        rows[f"n_{n}"] = measure(n, repeats, browser)
    last = rows[f"n_{sizes[-1]}"]
    out: dict[str, Any] = {**rows, "repeats": repeats}
    out["summary"] = (
        f"N = {last['partitions']}: answer {last['answer_ms']:g} ms, page load {last['page_load_s']:g} s, "
        f"refresh {last['refresh_s']:g} s; server {last['rss_mb']:g} MB, peak {last['peak_rss_mb']:g} MB then "
        f"{last['peak_after_3_more_reads_mb']:g} MB after 3 more reads (x{last['growth']:g}); "
        f"one background read {last['read_s']} s"
    )
    out["goal"] = "answer and page load < 2 s at the largest N; server peak RSS grows < 5% over 3 more reads at every N"
    out["goal_met"] = (
        last["answer_ms"] < 2000
        and last["page_load_s"] < 2
        and all(r["growth"] < 1.05 for k, r in rows.items() if k.startswith("n_"))
    )
    return out


def section(result: dict[str, Any], seconds: float, loads: str) -> str:
    """This benchmark's section of RESULTS.md: a row per N, the summary, the goal."""
    rows = [v for k, v in result.items() if k.startswith("n_")]
    cols = list(rows[0])
    lines = [
        f"## {TITLE}",
        "",
        f"`{COMMAND}` ({seconds:.0f} s in this run, {time.strftime('%Y-%m-%d %H:%M %Z')}; "
        f"load average (1/5/15 min) before / after: {loads}; the machine is shared by other work, 2 cores)",
        "",
        (__doc__ or "").strip(),
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
        *("| " + " | ".join("-" if r[c] is None else f"{r[c]:g}" for c in cols) + " |" for r in rows),
        "",
        f"Medians of {result['repeats']} page loads and refreshes, 20 answers. Summary: {result['summary']}.",
        f"Goal: {result['goal']}. Met: {'yes' if result['goal_met'] else '**no**'}.",
    ]
    return "\n".join(lines) + "\n"


def write_section(text: str, path: Path = RESULTS) -> None:
    """Replace this benchmark's section of RESULTS.md where it is (or append it); the others stay as they are."""
    old = path.read_text() if path.exists() else ""
    marker = f"## {TITLE}\n"
    if marker not in old:
        path.write_text(old.rstrip("\n") + "\n\n" + text)
        return
    head, rest = old.split(marker, 1)
    tail = rest.split("\n## ", 1)[1] if "\n## " in rest else ""
    path.write_text(head + text + ("\n## " + tail if tail else ""))


def main() -> None:
    before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    started = time.monotonic()
    result = run()
    seconds = time.monotonic() - started
    after = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    write_section(section(result, seconds, f"{before} / {after}"))
    print_result("dashboard", result)


if __name__ == "__main__":
    main()
