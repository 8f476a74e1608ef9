"""Time ranges: which imagery a job asks for, where that comes from, and the checks on it.

Satellite inference is always about a time, so every rslearn window of a job gets a time
range, and rslearn's prepare matches it against the data source's items with the
layer's own query settings (``max_matches``, ``space_mode``, ``time_offset``...).

A range comes from, highest precedence first:

1. ``--start`` / ``--end`` on the command line (``rslp write-jobs``, ``rslp run``,
   ``rslp rolling``): the whole job, every feature;
2. a request feature's ``properties.start_time`` / ``properties.end_time``: that feature;
3. ``time_range: {start, end}`` in pipeline.yaml: every feature without its own.

With none of them, windows have no time range and rslearn matches any item (the
behaviour before time ranges existed). A range is half-open, ``[start, end)``, as in
rslearn. Times are ISO 8601; a date alone is midnight and a time without an offset is
UTC, so the same text means the same instant on every worker.

Every error is a :class:`TimeRangeError`: one line naming the flag, feature or field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rslp.errors import PermanentError

_MONTH = re.compile(r"\d{4}-\d{2}")


class TimeRangeError(PermanentError):
    """A time or time range is unusable; the message names the flag, feature or field."""


class NoImageryError(TimeRangeError):
    """No item of a data source falls in a time range (a rolling run skips such a period)."""


def parse_time(text: Any, where: str) -> datetime:
    """``text`` (ISO 8601) as an aware datetime; naive times are UTC, a month (``2026-02``) its first day."""
    text = str(text)
    try:
        value = datetime.fromisoformat(f"{text}-01" if _MONTH.fullmatch(text) else text)
    except ValueError:
        raise TimeRangeError(
            f"{where}: {text!r} is not an ISO 8601 time (e.g. 2026-01-01 or 2026-01-01T00:00:00Z)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class TimeRange:
    """A half-open period ``[start, end)`` of aware datetimes, end after start."""

    start: datetime
    end: datetime

    @classmethod
    def parse(cls, start: Any, end: Any, prefix: str, names: tuple[str, str]) -> TimeRange:
        """Both bounds from ISO 8601 text; errors name ``prefix`` + the bound's name in ``names``."""
        first, last = parse_time(start, prefix + names[0]), parse_time(end, prefix + names[1])
        if last <= first:
            raise TimeRangeError(f"{prefix}{names[1]}: {end} is not after {names[0]} {start} (end before start)")
        return cls(first, last)

    def as_tuple(self) -> tuple[datetime, datetime]:
        """The range as rslearn's ``(start, end)`` tuple."""
        return self.start, self.end

    def overlaps(self, other: tuple[datetime, datetime] | None) -> bool:
        """Whether ``other`` (None: timeless, matches any time) shares an instant with this range."""
        return other is None or (other[0] < self.end and self.start < other[1])

    def __str__(self) -> str:
        return f"{self.start.isoformat()}/{self.end.isoformat()}"


def from_flags(start: str | None, end: str | None) -> TimeRange | None:
    """The range given by ``--start`` / ``--end`` (both or neither)."""
    if start is None and end is None:
        return None
    if start is None or end is None:
        given, missing = ("--start", "--end") if end is None else ("--end", "--start")
        raise TimeRangeError(f"{given}: given without {missing}; give both or neither")
    return TimeRange.parse(start, end, "", ("--start", "--end"))


def from_feature(properties: Any, where: str) -> TimeRange | None:
    """A feature's own range from ``properties.start_time`` / ``properties.end_time`` (both or neither).

    ``where`` names the feature in errors, e.g. ``request.geojson: features.3``.
    """
    props = properties if isinstance(properties, dict) else {}
    start, end = props.get("start_time"), props.get("end_time")
    if start is None and end is None:
        return None
    if start is None or end is None:
        given, missing = ("start_time", "end_time") if end is None else ("end_time", "start_time")
        raise TimeRangeError(f"{where}.properties.{given}: given without {missing}; give both or neither")
    return TimeRange.parse(start, end, f"{where}.properties.", ("start_time", "end_time"))


def resolve(flags: TimeRange | None, feature: TimeRange | None, config: TimeRange | None) -> TimeRange | None:
    """The range a feature's windows get: flags, else the feature's own, else the config's default."""
    return flags or feature or config


def check_imagery(dataset_config: dict[str, Any], dataset_path: str, spans: dict[TimeRange, str]) -> None:
    """Fail, naming where each range came from, if a range has no item in some data-source layer.

    ``dataset_config`` is the pipeline's dataset.json with its variables resolved (the
    sources are listed now), ``dataset_path`` where it was read, for the error.

    Only sources that can list their items offline (LocalFiles and its subclasses) are
    checked here, before anything is published; for a search API that cannot be known
    until prepare, whose error names the windows' time range. The layer's ``time_offset``
    and ``duration`` are applied first, as rslearn's prepare does.
    """
    from rslearn.config import DatasetConfig
    from rslearn.data_sources.local_files import LocalFiles

    dataset = DatasetConfig.model_validate(dataset_config)
    for name, layer in dataset.layers.items():
        if layer.data_source is None:
            continue
        source = layer.instantiate_data_source()
        if not isinstance(source, LocalFiles):
            continue
        times = [item.geometry.time_range for item in source.list_items()]
        for span, where in spans.items():
            wanted = TimeRange(*(layer.data_source.get_request_time_range(span.as_tuple()) or span.as_tuple()))
            if not any(wanted.overlaps(t) for t in times):
                raise NoImageryError(
                    f"{where}: no item of layers.{name} in {dataset_path} falls in {wanted} ({describe_items(times)})"
                )


def describe_items(times: list[tuple[datetime, datetime] | None]) -> str:
    """``3 items from A to B`` (or that there are none) for an error message."""
    dated = [t for t in times if t is not None]
    if not dated:
        return f"{len(times)} items, none with a time"
    return f"{len(times)} items, from {min(t[0] for t in dated).isoformat()} to {max(t[1] for t in dated).isoformat()}"
