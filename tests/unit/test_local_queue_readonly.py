"""Commands open the queue a manifest names read-only, and act only on a queue the operator names."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from rslp.dlq import dlq_replay
from rslp.errors import QueueResourceError
from rslp.queue import Outgoing, open_queue
from rslp.queue.choice import UnnamedQueueError
from rslp.queue.placement import QUEUE_DIR_ENV, default_queue_url
from rslp.status.model import collect
from tests.unit.test_status_report import make_job


def test_a_read_only_queue_never_changes_a_file_that_is_not_a_queue(tmp_path: Path) -> None:
    other = tmp_path / "another-project.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE accounts (name TEXT)")
    before = other.read_bytes()
    with pytest.raises(QueueResourceError, match="is not an rslp queue"):
        open_queue(f"local://{other}", readonly=True)
    assert other.read_bytes() == before
    with sqlite3.connect(other) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        assert [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["accounts"]


def test_a_read_only_queue_reads_counts_and_dead_letters(tmp_path: Path) -> None:
    url = f"local://{tmp_path / 'q.db'}"
    with open_queue(url, create=True) as q:
        q.setup("t", "t")
        q.publish("t", [Outgoing(b"a"), Outgoing(b"b")])
        q.dead_letter(q.pull("t", 60)[0], "boom")
    with open_queue(url, readonly=True) as q:
        assert q.counts("t").backlog == 1
        [letter] = q.peek("t-dead-letter")
        assert letter.data == b"a"
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            q.publish("t", [Outgoing(b"c")])


def test_status_of_a_job_whose_manifest_names_another_sqlite_file_leaves_it_alone(tmp_path: Path) -> None:
    other = tmp_path / "another-project.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE accounts (name TEXT)")
    before = other.read_bytes()
    make_job(tmp_path / "job", 2, queue=f"local://{other}")
    job = collect(str(tmp_path / "job"))
    assert "is not an rslp queue" in job.queue_note
    assert other.read_bytes() == before and not Path(f"{other}-wal").exists()


def test_dlq_replay_acts_only_on_a_named_queue_unless_it_is_the_jobs_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(QUEUE_DIR_ENV, str(tmp_path / "queues"))
    root = tmp_path / "job"
    named = f"local://{tmp_path / 'elsewhere.db'}"
    make_job(root, 2, queue=named)
    with pytest.raises(UnnamedQueueError, match=f"names the queue {named}; .*add --queue {named}"):
        dlq_replay(job_root=str(root), all=True)
    with open_queue(named, create=True) as q:
        for topic in ("st-cpu", "st-gpu", "st-combine"):
            q.setup(topic, topic)
    assert dlq_replay(job_root=str(root), queue=named, all=True) == []
    assert capsys.readouterr().out.startswith(f"queue {named}\n")
    # The job root's own embedded queue (where write-jobs puts it by default) needs no flag.
    own = default_queue_url(str(root))
    make_job(root, 2, queue=own)
    with open_queue(own, create=True) as q:
        for topic in ("st-cpu", "st-gpu", "st-combine"):
            q.setup(topic, topic)
    assert dlq_replay(job_root=str(root), all=True) == []
