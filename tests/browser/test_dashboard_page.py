"""The dashboard page in a real headless Chromium: a live demo job, and hostile strings from a job root."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from upath import UPath

from rslp.jobroot import JobRoot
from rslp.pipeline.catalog import write_catalog
from rslp.pipeline.config import subscriptions
from rslp.pipeline.demo import DEMO_DIR, DEMO_SCENE, ensure_scene
from rslp.pipeline.job import make_task
from rslp.pipeline.rolling import rolling
from rslp.pipeline.run import worker_command
from rslp.pipeline.write_jobs import write_jobs
from tests.browser.conftest import Page
from tests.unit.conftest import demo_copy  # noqa: F401 - a fixture
from tests.unit.test_status_report import make_job, mark

pytestmark = pytest.mark.browser

#: Pixels of the map canvas per partition state code, counted by their exact fill colour.
MAP_COLOURS = """() => {
  const canvas = document.getElementById("map");
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  const hex = (i) => "#" + [data[i], data[i + 1], data[i + 2]].map((v) => v.toString(16).padStart(2, "0")).join("");
  const counts = {};
  for (let i = 0; i < data.length; i += 4) counts[hex(i)] = (counts[hex(i)] || 0) + 1;
  return counts;
}"""
STATE_OF_STEPS = """() => Object.fromEntries([...document.querySelectorAll("#steps tr[data-step]")]
  .map((row) => [row.dataset.step, row.dataset.state]))"""
DONE, QUEUED, RUNNING = "#2ca02c", "#bdbdbd", "#1f77b4"  # rslp.status.map.STATE_COLOURS


def next_refresh(page: Page, after: str | None) -> str:
    """Wait until the page has drawn a view newer than ``after``; the new view's time."""
    page.tab.wait_for_function(
        "(after) => document.body.dataset.updated && document.body.dataset.updated !== after", arg=after or ""
    )
    return str(page.tab.evaluate("document.body.dataset.updated"))


@pytest.mark.slow
def test_demo_page_shows_each_step_reaching_done_while_workers_run(tmp_path: Path, page: Page, dashboard: Any) -> None:
    ensure_scene(DEMO_SCENE, DEMO_DIR / "data")
    job_root = tmp_path / "job"
    queue = f"local://{tmp_path}/queue.db"
    write_jobs(str(DEMO_DIR / "pipeline.yaml"), str(DEMO_DIR / "request.geojson"), str(job_root), queue=queue)
    manifest = JobRoot(job_root).read_manifest()
    server = dashboard(job_root)
    page.tab.goto(server.url)
    seen = next_refresh(page, None)
    first_map = page.tab.evaluate(MAP_COLOURS)
    assert first_map.get(QUEUED, 0) > 1000 and DONE not in first_map
    assert set(page.tab.evaluate(STATE_OF_STEPS).values()) == {"active"}

    subs = subscriptions(manifest.steps + manifest.job_steps, manifest.topics)
    env = {**os.environ, "WANDB_MODE": "disabled"}
    worker = subprocess.Popen(worker_command(queue, subs, idle_timeout=2, lease_seconds=10), env=env)
    done_at: dict[str, int] = {}
    maps, workers_seen = [first_map], 0
    try:
        deadline = time.monotonic() + 180
        while len(done_at) < len(manifest.steps + manifest.job_steps) and time.monotonic() < deadline:
            seen = next_refresh(page, seen)
            for step, state in page.tab.evaluate(STATE_OF_STEPS).items():
                if state == "done":
                    done_at.setdefault(step, len(maps))
            workers_seen += page.tab.locator("#workers tbody tr:not(.stalled) td:has-text('running')").count()
            maps.append(page.tab.evaluate(MAP_COLOURS))
        assert worker.wait(timeout=60) == 0
    finally:
        worker.kill()
    assert set(done_at) == set(manifest.steps + manifest.job_steps), f"steps done on the page: {done_at}"
    assert done_at["create_windows"] <= done_at["predict"] <= done_at["observe"]
    assert done_at["create_windows"] < done_at["observe"], "every step was already done at one refresh"
    assert workers_seen, "the page never showed a worker running a task"
    # The tiles change state: queued at first, then running (or partly done), then all done.
    assert any(m.get(RUNNING, 0) > 1000 for m in maps[1:]), "no tile was shown in progress"
    assert maps[-1].get(DONE, 0) > 1000 and maps[-1].get(QUEUED, 0) == 0 and maps[-1].get(RUNNING, 0) == 0
    next_refresh(page, seen)
    assert page.tab.locator("#outputs a", has_text="prediction.tif").count() == 1
    assert page.tab.locator("#thumbnail").evaluate("img => img.complete && img.naturalWidth > 0")
    assert page.errors == []


def test_an_xss_probe_in_a_dead_letter_reason_renders_as_text_and_runs_nothing(
    tmp_path: Path, page: Page, dashboard: Any
) -> None:
    probe = '<img src=x onerror="window.__probe=1"><script>window.__probe=2</script><b>bold</b>'
    root = tmp_path / "job"
    make_job(root, 4)
    mark(root, "create_windows", "p00001", "running", "dead", error=probe)
    mark(root, "create_windows", "p00002", "running", "failed", error=probe)
    server = dashboard(root)
    page.tab.goto(server.url)
    page.tab.wait_for_selector("#dead tr.dead-letter")
    assert page.tab.locator("#dead td.reason").text_content() == probe
    assert page.tab.locator("#failures td.reason").all_text_contents() == [probe, probe]
    assert page.tab.locator("main img:not(#thumbnail), main script, main b").count() == 0
    assert page.tab.evaluate("window.__probe") is None
    replay = page.tab.locator("#commands pre").text_content()
    assert replay is not None and f"rslp dlq replay --job_root {root} --all" in replay
    assert page.errors == []  # an injected <img src=x> would have logged a failed load


def test_the_map_zooms_in_around_the_cursor(tmp_path: Path, page: Page, dashboard: Any) -> None:
    root = tmp_path / "job"
    make_job(root, 100)
    for i in range(50):
        mark(root, "create_windows", f"p{i:05d}", "running", "done")
    server = dashboard(root)
    page.tab.goto(server.url)
    next_refresh(page, None)
    before = page.tab.evaluate(MAP_COLOURS)
    box = page.tab.locator("#map").bounding_box()
    assert box is not None
    page.tab.mouse.move(box["x"] + 20, box["y"] + 20)
    for _ in range(4):
        page.tab.mouse.wheel(0, -200)
    after = page.tab.evaluate(MAP_COLOURS)
    assert after != before and after.get("#ffffff", 0) < before.get("#ffffff", 0)  # tiles fill more of the canvas
    page.tab.click("#zoom-reset")
    assert page.tab.evaluate(MAP_COLOURS) == before
    assert page.errors == []


def test_a_rolling_root_shows_one_row_per_period_with_its_state_and_drift(
    demo_copy: Path,  # noqa: F811 - the fixture
    tmp_path: Path,
    page: Page,
    dashboard: Any,
) -> None:
    root = tmp_path / "root"
    config, request = str(demo_copy / "pipeline.yaml"), str(demo_copy / "request.geojson")
    rolling(config, request, str(root), "month", "2026-01", "2026-03")
    ledger = JobRoot(root / "2026-01")
    manifest = ledger.read_manifest()
    ledger.mark(make_task(manifest.job_id, manifest.job_root, "create_windows", "p00001"), "dead", error="boom")
    write_catalog(UPath(root))
    server = dashboard(root=root)
    page.tab.goto(server.url)
    page.tab.wait_for_selector("#periods tbody tr")
    cells = "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    rows = page.tab.locator("#periods tbody tr").evaluate_all(cells)
    assert [(r[0], r[2], r[3]) for r in rows] == [("2026-01", "0/26", "failed"), ("2026-02", "0/26", "running")]
    assert page.tab.locator("#job").is_hidden() and page.errors == []
