"""The embedded queue opened read-only (status, dlq list): whatever file it is named, it stays as it was."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from rslp.errors import QueueResourceError
from rslp.queue import Outgoing, open_queue


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
