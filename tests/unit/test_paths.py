from pathlib import Path

import pytest
from upath import UPath

from rslp.paths import PathEscapeError, under


@pytest.mark.parametrize("component", ["..", ".", "", "/etc", "a/b", "../x", "x/../../y", "a\\b", "\x00"])
def test_a_component_that_could_leave_its_root_is_refused(tmp_path: Path, component: str) -> None:
    with pytest.raises(PathEscapeError):
        under(tmp_path, "markers", component)


def test_safe_components_stay_under_the_root(tmp_path: Path) -> None:
    assert under(tmp_path, "markers", "predict", "abc.done.json") == tmp_path / "markers" / "predict" / "abc.done.json"
    assert str(under(UPath("memory://bucket/job"), "markers", "s")) == "memory://bucket/job/markers/s"
