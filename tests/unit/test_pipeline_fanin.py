"""Fan-in: the last partition to arrive (and only after every one has) asks for combine, in O(N) work."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest
from upath import UPath

from rslp.pipeline import fanin


def level0_objects(root: UPath) -> int:
    return sum(1 for _ in (root / "fanin" / "0").glob("*/*"))


@pytest.mark.parametrize(("count", "group"), [(1, 100), (7, 100), (250, 10), (1000, 4)])
def test_only_the_last_arrival_completes_the_job(tmp_path: Path, count: int, group: int) -> None:
    root = UPath(tmp_path)
    order = list(range(count))
    random.Random(count).shuffle(order)
    answers = [fanin.arrive(root, count, i, group) for i in order]
    assert answers == [False] * (count - 1) + [True]


def test_partitions_finishing_together_on_many_workers_complete_it_once_all_are_in(tmp_path: Path) -> None:
    """16 threads arrive at the same moment (a barrier): exactly one completes, never before all 400 arrived."""
    root, count, workers = UPath(tmp_path), 400, 16
    barrier = threading.Barrier(workers)
    completed: list[int] = []
    lock = threading.Lock()

    def worker(w: int) -> None:
        for i in range(w, count, workers):
            barrier.wait(timeout=60)  # every round, all workers arrive together
            if fanin.arrive(root, count, i, 5):
                seen = level0_objects(root)
                with lock:
                    completed.append(seen)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    # Several of the last round may see the job complete; only the one holding fanin/ready asks.
    assert len(completed) == 1 and completed[0] == count


def test_a_task_killed_after_arriving_arrives_again_when_redelivered(tmp_path: Path) -> None:
    root, count = UPath(tmp_path), 30
    for i in range(count - 1):
        assert not fanin.arrive(root, count, i, 4)
    # The last partition's worker wrote its level-0 object and died before returning: no
    # done marker, so its task is redelivered and runs (and arrives) again.
    (root / "fanin" / "0" / f"{(count - 1) // 4:06d}" / f"{count - 1:06d}").write_text("")
    assert fanin.arrive(root, count, count - 1, 4)
    assert fanin.arrive(root, count, count - 1, 4)  # and again, should its worker die once more
    # A duplicate of any other partition's task after completion does not ask a second time.
    assert not fanin.arrive(root, count, 3, 4)


def test_fan_in_work_is_linear_in_the_job_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every arrival lists one group per level it completes: about N (1 + 1/G + ...) listings in all."""
    listed: list[int] = []
    real = fanin.arrived

    def counting(folder: UPath) -> int:
        n = real(folder)
        listed.append(n)
        return n

    monkeypatch.setattr(fanin, "arrived", counting)
    root, count, group = UPath(tmp_path), 2000, 10
    for i in range(count):
        fanin.arrive(root, count, i, group)
    assert len(listed) == 2000 + 200 + 20 + 2  # one listing per unit per level, none per pair
    assert max(listed) <= group


def test_an_index_outside_the_job_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="partition index 5 is outside the job's 5 partitions"):
        fanin.arrive(UPath(tmp_path), 5, 5, 100)
