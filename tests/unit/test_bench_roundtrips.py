"""The round-trip benchmark on both storages, held to the table in docs/architecture.md.

A change that adds a storage round trip to the worker's part of a task fails here until
the documented table says so; the task part (rslearn's own I/O, mostly) may not exceed it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import roundtrips, run_all

#: Runs real workers or whole jobs: `make test` only, not `make check`.
pytestmark = pytest.mark.slow

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
STEPS = ["create_windows", "prepare", "ingest", "materialize", "predict", "postprocess"]


def documented(storage: str) -> dict[str, dict[str, int]]:
    """The table that follows the line starting with ``storage`` in docs/architecture.md, by step and column."""
    lines = DOC.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(storage))
    header = next(i for i in range(start, len(lines)) if lines[i].startswith("| step |"))
    columns = [c.strip() for c in lines[header].strip("|").split("|")]
    rows = {}
    for line in lines[header + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = {column: int(cell) for column, cell in zip(columns[1:], cells[1:], strict=True)}
    return rows


def measured(steps: dict[str, dict[str, dict[str, int]]], step: str) -> dict[str, int]:
    """One step's counts as the documented table's columns name them."""
    counts = steps[step]
    row = {f"{part} {kind}": counts[part].get(kind, 0) for part in ("worker", "task") for kind in roundtrips.KINDS}
    row["of which claim"] = roundtrips.total(counts["claim"])
    return row


def test_roundtrips_per_step_are_those_the_architecture_page_documents() -> None:
    result = roundtrips.run(storages=("local", "gcs"), compare=False)
    local, gcs = documented("Local disk"), documented("GCS emulator")
    assert list(result["local_new"]) == list(result["gcs_new"]) == list(local) == list(gcs) == STEPS
    for step in STEPS:
        now, doc = measured(result["local_new"], step), local[step]
        worker = [c for c in doc if c.startswith("worker") or c == "of which claim"]
        assert {c: now[c] for c in worker} == {c: doc[c] for c in worker}, step  # exact: the fleet's own part
        assert all(now[c] <= doc[c] for c in doc if c.startswith("task")), step
        # On GCS stats move by a few between runs of the same code (gcsfs's listing cache); the rest does not.
        now, doc = measured(result["gcs_new"], step), gcs[step]
        stable = [f"worker {k}" for k in roundtrips.STABLE] + ["of which claim"]
        assert {c: now[c] for c in stable} == {c: doc[c] for c in stable}, step
        assert all(now[f"task {k}"] <= doc[f"task {k}"] for k in roundtrips.STABLE), step
    assert result["local_new"]["create_windows"]["task"]["write"] >= 13  # a metadata.json per window (13 in p00000)
    assert "| create_windows |" in "\n".join(roundtrips.markdown(result))
    assert ("roundtrips", roundtrips.TITLE) in run_all.BENCHMARKS
