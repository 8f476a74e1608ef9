"""A pipeline made for fan-in tests: real create_windows and postprocess steps, a trivial postprocessor.

``Tally`` writes each partition's name as its file, and combine writes how many files
it merged and appends that count to a log, so a test sees every combine that ran and
whether it had every partition.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic.dataclasses import dataclass
from upath import UPath

from rslp.pipeline.postprocess import Postprocessor

DEMO_REQUEST = Path(__file__).resolve().parents[2] / "tasks" / "demo" / "request.geojson"


@dataclass
class Tally(Postprocessor):
    """One tiny text file per partition; combine counts them (and logs each run to ``log``)."""

    log: str
    layer: str = "output"
    name: str = "tally"
    suffix: ClassVar[str] = ".txt"

    def merge_windows(self, dataset: Any, windows: list[Any], footprint: Any, dest: UPath) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(dest.stem)

    def combine(self, sources: list[UPath], dest: UPath) -> None:
        names = [s.read_text() for s in sources]
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(str(len(names)))
        with open(self.log, "a") as f:
            f.write(f"{len(names)}\n")


def write_pipeline(folder: Path, topic: str) -> Path:
    """pipeline.yaml + dataset.json in ``folder``: create_windows, postprocess on TOPIC-cpu, combine on TOPIC-combine.

    Partitions are 128 px cells of the demo request (16 of them), each one window.
    """
    grid = "{class_path: rslp.pipeline.partition.GridPartitioner, init_args: {cell_size: 128, resolution: 10}}"
    (folder / "dataset.json").write_text(
        '{"layers": {"output": {"type": "raster", "band_sets": [{"dtype": "uint8", "bands": ["class"]}]}}}'
    )
    (folder / "pipeline.yaml").write_text(
        f"""name: fanin
dataset_config: dataset.json
partitioner: {grid}
window_partitioner: {grid}
steps:
  - {{name: create_windows, topic: {topic}-cpu}}
  - {{name: postprocess, topic: {topic}-cpu}}
  - {{name: combine, topic: {topic}-combine}}
postprocessors:
  - class_path: {__name__}.Tally
    init_args: {{log: {folder / "combine.log"}}}
hardware: {{workers: 0}}
"""
    )
    return folder / "pipeline.yaml"


def combine_runs(folder: Path) -> list[int]:
    """The number of partition files each combine run merged, in order."""
    log = folder / "combine.log"
    return [int(line) for line in log.read_text().split()] if log.exists() else []
