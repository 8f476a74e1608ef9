"""The round-trip benchmark on both storages, so it cannot rot: every step's worker and task part is counted."""

from __future__ import annotations

import pytest

from bench import roundtrips, run_all

#: Runs real workers or whole jobs: `make test` only, not `make check`.
pytestmark = pytest.mark.slow


def test_roundtrips_counts_each_steps_storage_calls_on_local_disk_and_gcs() -> None:
    result = roundtrips.run(storages=("local", "gcs"), compare=False)
    for storage in ("local", "gcs"):
        steps = result[f"{storage}_new"]
        assert list(steps) == ["create_windows", "prepare", "ingest", "materialize", "predict", "postprocess"]
        for counts in steps.values():
            assert counts["worker"].get("read", 0) >= 1  # the header, read by the worker's admission check
        windows = steps["create_windows"]["task"].get("write", 0)
        assert windows >= 13  # one metadata.json per window of p00000 (13 in tasks/demo)
    for counts in result["gcs_new"].values():
        assert counts["worker"]["write"] == 2  # the running and the done marker: one upload each
    for counts in result["local_new"].values():
        assert counts["worker"]["write"] == 4  # each marker: a temporary file, then its rename
    assert "| create_windows |" in "\n".join(roundtrips.markdown(result))
    assert ("roundtrips", roundtrips.TITLE) in run_all.BENCHMARKS
