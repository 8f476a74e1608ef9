"""Pub/Sub backlog from Cloud Monitoring: the newest point, and one line when it cannot be had."""

from __future__ import annotations

from typing import Any

import pytest
from google.api_core.exceptions import PermissionDenied
from google.cloud import monitoring_v3

from rslp.queue.monitoring import OLDEST_UNACKED, UNDELIVERED, BacklogUnavailable, pubsub_backlog


class FakeMetricClient:
    """Answers list_time_series like Monitoring: newest point first, per metric; records the filters."""

    def __init__(self, points: dict[str, list[int]], error: Exception | None = None) -> None:
        self.points, self.error, self.filters = points, error, []

    def list_time_series(self, request: dict[str, Any]) -> list[monitoring_v3.TimeSeries]:
        if self.error:
            raise self.error
        self.filters.append(request["filter"])
        metric = next(m for m in self.points if m in request["filter"])
        points = [monitoring_v3.Point(value=monitoring_v3.TypedValue(int64_value=v)) for v in self.points[metric]]
        return [monitoring_v3.TimeSeries(points=points)] if points else []


@pytest.fixture(autouse=True)
def no_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)


def test_backlog_is_the_newest_point_of_the_subscription() -> None:
    client = FakeMetricClient({UNDELIVERED: [1234, 99], OLDEST_UNACKED: [75]})
    counts = pubsub_backlog("proj", "demo-gpu", client)
    assert (counts.backlog, counts.in_flight, counts.oldest_unacked_seconds) == (1234, None, 75.0)
    assert all('resource.labels.subscription_id = "demo-gpu"' in f for f in client.filters)


def test_no_permission_names_the_role() -> None:
    client = FakeMetricClient({}, error=PermissionDenied("denied"))
    with pytest.raises(BacklogUnavailable, match=r"needs roles/monitoring\.viewer on project proj"):
        pubsub_backlog("proj", "s", client)


def test_no_data_yet_and_the_emulator_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BacklogUnavailable, match="no Cloud Monitoring data for subscription s yet"):
        pubsub_backlog("proj", "s", FakeMetricClient({UNDELIVERED: [], OLDEST_UNACKED: []}))
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:1")
    with pytest.raises(BacklogUnavailable, match="emulator has no Cloud Monitoring"):
        pubsub_backlog("proj", "s", FakeMetricClient({}))
