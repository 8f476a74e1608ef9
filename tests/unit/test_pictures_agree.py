"""The pictures a user compares agree: one colour per class, labels inside the frame, and they say what they show."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from rslp.pipeline.picture import class_colour, draw_prediction
from rslp.status.history import PeriodRow, draw_history
from rslp.status.map import draw_map
from tests.unit.test_demo_console import write_tif
from tests.unit.test_status_report import make_job

CLASSES = ["b_brighter", "a_brighter"]


def period(name: str, distribution: dict[str, float]) -> PeriodRow:
    row = {"id": name, "distribution": distribution, "drift_reference": 0.1, "drift_previous": None}
    row |= {"threshold": 0.1, "warning": None, "start_datetime": None, "end_datetime": None, "status": "done"}
    return PeriodRow(row, 1, 0, 1)


def labels_inside(fig: Figure) -> None:
    """Every axis label and tick label of ``fig`` lies inside the picture (none clipped at an edge)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    width, height = fig.bbox.width, fig.bbox.height
    for ax in fig.axes:
        frame = ax.get_window_extent(renderer)
        # Tick labels of ticks beyond the view limits are listed but never drawn.
        ys = [t for t in ax.get_yticklabels() if frame.y0 <= t.get_window_extent(renderer).y0 + 1 <= frame.y1]
        xs = [t for t in ax.get_xticklabels() if frame.x0 <= t.get_window_extent(renderer).x0 + 1 <= frame.x1]
        for text in [ax.yaxis.label, ax.xaxis.label, *ys, *xs]:
            if not text.get_text() or not text.get_visible():
                continue
            box = text.get_window_extent(renderer)
            assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width and box.y1 <= height, text.get_text()


def test_history_and_the_status_map_keep_their_axis_labels_inside_the_picture(tmp_path: Path) -> None:
    labels_inside(draw_history([period("2026-01", {"b_brighter": 0.5, "a_brighter": 0.5})]))
    manifest = make_job(tmp_path / "job", 4)
    labels_inside(draw_map(manifest, {}))


def test_a_class_has_the_same_colour_in_the_prediction_and_in_the_history(tmp_path: Path) -> None:
    history = draw_history([period("2026-01", {"b_brighter": 0.4, "a_brighter": 0.6})])
    bars = [c for c in history.axes[0].containers]
    assert [to_hex(b.patches[0].get_facecolor()) for b in bars] == [class_colour(0).lower(), class_colour(1).lower()]

    image = write_tif(tmp_path / "image.tif", np.full((3, 48, 64), 2000, dtype=np.uint16))
    classes = (np.arange(64)[None, None, :] >= 32).astype(np.uint8).repeat(48, axis=1)
    prediction = write_tif(tmp_path / "prediction.tif", classes, nodata=255)
    meanings = {"b_brighter": "band 2 brighter than band 1", "a_brighter": "band 1 brighter than band 2"}
    fig = draw_prediction(prediction, [image], CLASSES, period="2026-01-01 to 2026-02-01", meanings=meanings)
    legend = fig.axes[1].get_legend()
    assert [t.get_text() for t in legend.texts] == [
        "0: b_brighter (band 2 brighter than band 1)",
        "1: a_brighter (band 1 brighter than band 2)",
    ]
    assert [to_hex(h.get_facecolor()) for h in legend.legend_handles] == [
        class_colour(0).lower(),
        class_colour(1).lower(),
    ]
    assert "imagery of 2026-01-01 to 2026-02-01" in fig.get_suptitle()
