"""A Pub/Sub subscription's backlog, from Cloud Monitoring.

Pub/Sub's own API cannot count a subscription's messages; Cloud Monitoring can
(``num_undelivered_messages`` and ``oldest_unacked_message_age``, sampled every
minute). ``rslp status`` and the autoscaler use it where the caller's credentials
allow (``roles/monitoring.viewer`` on the project); elsewhere, and on the emulator,
which has no Monitoring, they say why and fall back to the ledger.
"""

from __future__ import annotations

import os
import time
from typing import Any

from rslp.queue.base import QueueCounts

UNDELIVERED = "pubsub.googleapis.com/subscription/num_undelivered_messages"
OLDEST_UNACKED = "pubsub.googleapis.com/subscription/oldest_unacked_message_age"
#: Monitoring samples these every minute; look back far enough to find the latest point.
LOOKBACK = 600


class BacklogUnavailable(Exception):
    """Cloud Monitoring cannot say; the message is one line naming why and what would fix it."""


def pubsub_backlog(project: str, subscription: str, client: Any = None) -> QueueCounts:
    """Backlog and oldest unacked age of ``subscription``, or BacklogUnavailable saying why not."""
    if os.environ.get("PUBSUB_EMULATOR_HOST"):
        raise BacklogUnavailable("the Pub/Sub emulator has no Cloud Monitoring")
    from google.api_core import exceptions as gexc
    from google.auth.exceptions import DefaultCredentialsError

    try:
        if client is None:
            from google.cloud import monitoring_v3

            client = monitoring_v3.MetricServiceClient()
        backlog = _latest(client, project, subscription, UNDELIVERED)
        oldest = _latest(client, project, subscription, OLDEST_UNACKED)
    except DefaultCredentialsError:
        raise BacklogUnavailable("no Google credentials for Cloud Monitoring") from None
    except gexc.PermissionDenied:
        raise BacklogUnavailable(f"needs roles/monitoring.viewer on project {project}") from None
    except gexc.GoogleAPICallError as e:
        raise BacklogUnavailable(f"Cloud Monitoring: {e.__class__.__name__}") from None
    if backlog is None:
        raise BacklogUnavailable(f"no Cloud Monitoring data for subscription {subscription} yet")
    return QueueCounts(backlog=int(backlog), in_flight=None, oldest_unacked_seconds=oldest)


def _latest(client: Any, project: str, subscription: str, metric: str) -> float | None:
    """The newest point of ``metric`` for ``subscription`` in the last :data:`LOOKBACK` seconds."""
    from google.cloud import monitoring_v3

    now = time.time()
    interval = monitoring_v3.TimeInterval(end_time={"seconds": int(now)}, start_time={"seconds": int(now - LOOKBACK)})
    series = client.list_time_series(
        request={
            "name": f"projects/{project}",
            "filter": f'metric.type = "{metric}" AND resource.labels.subscription_id = "{subscription}"',
            "interval": interval,
            "view": monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL,
        }
    )
    for s in series:
        for point in s.points:  # newest first
            value = point.value
            return float(value.int64_value or value.double_value)
    return None
