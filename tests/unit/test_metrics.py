"""Worker metrics: recorded events are what a Prometheus scrape of the HTTP endpoint returns."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rslp.worker.metrics import WorkerMetrics


@pytest.fixture
def metrics() -> Iterator[WorkerMetrics]:
    m = WorkerMetrics()
    yield m
    m.stop()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_scrape_returns_tasks_by_outcome_durations_and_lease_extensions(metrics: WorkerMetrics) -> None:
    port = metrics.start(0, addr="127.0.0.1")
    metrics.task_finished("ok", "pipeline/predict", 12.0)
    metrics.task_finished("ok", "pipeline/predict", 40.0)
    metrics.task_finished("timeout", "pipeline/predict", 3600.0)
    metrics.task_finished("malformed", None)
    metrics.task_finished("skipped", "pipeline/ingest")
    metrics.lease_extended(3)
    metrics.lease_extended(0)
    got = scrape(port)
    assert got[("rslp_tasks_total", (("outcome", "ok"), ("workflow", "pipeline/predict")))] == 2
    assert got[("rslp_tasks_total", (("outcome", "timeout"), ("workflow", "pipeline/predict")))] == 1
    assert got[("rslp_tasks_total", (("outcome", "malformed"), ("workflow", "none")))] == 1
    assert got[("rslp_tasks_total", (("outcome", "skipped"), ("workflow", "pipeline/ingest")))] == 1
    ok = (("outcome", "ok"), ("workflow", "pipeline/predict"))
    assert got[("rslp_task_duration_seconds_count", ok)] == 2
    assert got[("rslp_task_duration_seconds_sum", ok)] == 52.0
    assert got[("rslp_task_duration_seconds_bucket", (("le", "15.0"), *ok))] == 1
    assert got[("rslp_lease_extensions_total", ())] == 3
    # Skipped and malformed messages did not run: no duration recorded for them.
    assert not any(k[0].startswith("rslp_task_duration") and ("outcome", "skipped") in k[1] for k in got)


def test_each_worker_has_its_own_registry() -> None:
    a, b = WorkerMetrics(), WorkerMetrics()  # the global registry would refuse the second set of names
    a.task_finished("ok", "common/noop", 0.1)
    assert b.registry.get_sample_value("rslp_tasks_total", {"outcome": "ok", "workflow": "common/noop"}) is None


def test_unknown_outcome_is_refused(metrics: WorkerMetrics) -> None:
    with pytest.raises(ValueError, match="unknown outcome"):
        metrics.task_finished("exploded", "common/noop")
