"""rslp dlq on the embedded queue: listing hands everything back; replay chooses, keeps ids, resets attempts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rslp import cli
from rslp.dlq import dlq_list, dlq_replay, dlq_show
from rslp.jobroot import JobRoot
from rslp.queue import Outgoing, Queue, dead_letter_name, open_queue
from rslp.queue.base import DEAD_LETTER_SOURCE, MAX_DELIVERIES_REASON
from rslp.task import Task, decode_task
from tests.conftest import pull_until
from tests.integration.workers import write_job

TOPIC = "dl-work"


def job_task(root: Path, partition: str, attempt: int = 2) -> Task:
    return Task(
        project="common",
        workflow="noop",
        job_id="j",
        job_root=str(root),
        partition=partition,
        step="noop",
        attempt=attempt,
    )


def dead_letter(q: Queue, data: bytes, reason: str, kind: str = "error", attempts: int = 3) -> None:
    """Publish, pull and dead-letter one message, with the attributes the worker sets."""
    q.publish(TOPIC, [Outgoing(data)])
    message = pull_until(q, TOPIC, 30, 5)
    assert message is not None
    q.dead_letter(message, reason, {"rslp_kind": kind, "rslp_attempts": str(attempts), "rslp_worker": "w-1"})


@pytest.fixture
def dlq(tmp_path: Path) -> tuple[str, Path, list[Task]]:
    """Four dead letters: two pipeline tasks (disk full), a plain task (boom), a message that is not a task."""
    url = f"local://{tmp_path / 'queue.db'}"
    root = tmp_path / "job"
    tasks = [job_task(root, "p1"), job_task(root, "p2"), Task(project="common", workflow="fail", args=["boom"])]
    ledger = JobRoot(root)
    write_job(root, "j", {"noop": TOPIC})
    with open_queue(url, create=True) as q:
        q.setup(TOPIC, TOPIC)
        for task in tasks[:2]:
            ledger.mark(task, "running", worker="w-1")
            ledger.mark(task, "failed", kind="error", error="OSError: disk full", attempt=2)
            ledger.mark(task, "dead", kind="error", error="OSError: disk full", attempts=3, traceback="Traceback: disk")
            dead_letter(q, task.encode(), "error on attempt 3/3: OSError: disk full")
        dead_letter(q, tasks[2].encode(), "error on attempt 3/3: RuntimeError: boom")
        dead_letter(q, b"not json", "message is not JSON", kind="malformed", attempts=1)
    return url, root, tasks


def dead_count(url: str) -> int:
    with open_queue(url) as q:
        counts = q.counts(dead_letter_name(TOPIC))
        assert counts is not None
        return counts.backlog + (counts.in_flight or 0)


def test_list_shows_reasons_and_removes_nothing(
    dlq: tuple[str, Path, list[Task]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _, tasks = dlq
    letters = dlq_list(queue=url, subscription=TOPIC)
    assert sorted(d.id for d in letters if d.task) == sorted(t.task_id for t in tasks)
    assert {d.kind for d in letters} == {"error", "malformed"}
    out = capsys.readouterr().out
    assert "2  error on attempt 3/3: OSError: disk full" in out and "(not a task)" in out
    assert dead_count(url) == 4
    with open_queue(url) as q:  # handed back at once: pullable again now
        assert len(q.pull(dead_letter_name(TOPIC), 30, max_messages=10)) == 4


def test_list_filters_by_reason(dlq: tuple[str, Path, list[Task]]) -> None:
    url, _, tasks = dlq
    assert [d.id for d in dlq_list(queue=url, subscription=TOPIC, reason="BOOM")] == [tasks[2].task_id]


def test_show_prints_the_task_and_the_ledgers_traceback(
    dlq: tuple[str, Path, list[Task]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, root, tasks = dlq
    dlq_show(tasks[0].task_id[:8], job_root=str(root), queue=url, subscription=TOPIC)
    out = capsys.readouterr().out
    assert f"task {tasks[0].task_id}" in out and '"partition": "p1"' in out and "Traceback: disk" in out
    with pytest.raises(ValueError, match="no dead letter"):
        dlq_show("ffffffff", queue=url, subscription=TOPIC)
    assert dead_count(url) == 4


def test_replay_by_reason_keeps_ids_resets_attempts_and_clears_stale_markers(dlq: tuple[str, Path, list[Task]]) -> None:
    url, root, tasks = dlq
    replayed = dlq_replay(job_root=str(root), queue=url, subscription=TOPIC, reason="disk full")
    assert sorted(replayed) == sorted(t.task_id for t in tasks[:2])
    assert dead_count(url) == 2  # boom and the malformed one stay
    with open_queue(url) as q:
        again = [decode_task(m.data) for m in q.pull(TOPIC, 30, max_messages=10)]
    assert sorted(t.task_id for t in again) == sorted(replayed)
    assert all(t.attempt == 0 and t.not_before is None for t in again)
    for task in tasks[:2]:
        states = JobRoot(root).states("noop")
        assert states[task.task_id] == "failed"  # its history stays; dead and running are gone
        assert JobRoot(root).read(task, "dead") is None and JobRoot(root).read(task, "running") is None


def test_replay_of_a_duplicated_dead_letter_publishes_it_once(dlq: tuple[str, Path, list[Task]]) -> None:
    url, _, tasks = dlq
    with open_queue(url) as q:
        dead_letter(q, tasks[2].encode(), "error on attempt 3/3: RuntimeError: boom")
    assert dlq_replay(queue=url, subscription=TOPIC, task_ids=tasks[2].task_id) == [tasks[2].task_id]
    assert dead_count(url) == 3  # both copies acked
    with open_queue(url) as q:
        assert len(q.pull(TOPIC, 30, max_messages=10)) == 1


def test_replay_needs_a_choice_and_dry_run_changes_nothing(dlq: tuple[str, Path, list[Task]]) -> None:
    url, _, _ = dlq
    with pytest.raises(ValueError, match="choose what to replay"):
        dlq_replay(queue=url, subscription=TOPIC)
    assert len(dlq_replay(queue=url, subscription=TOPIC, all=True, dry_run=True)) == 4
    assert dead_count(url) == 4


def test_cli_replays_all_including_a_message_that_is_not_a_task(dlq: tuple[str, Path, list[Task]]) -> None:
    url, _, _ = dlq
    assert cli.main(["dlq", "list", "--queue", url, "--subscription", TOPIC]) == 0
    assert cli.main(["dlq", "replay", "--queue", url, "--subscription", TOPIC, "--all", "true"]) == 0
    assert dead_count(url) == 0
    with open_queue(url) as q:
        data = sorted(m.data for m in q.pull(TOPIC, 30, max_messages=10))
    assert len(data) == 4 and b"not json" in data


def test_a_message_the_queue_moved_after_its_worker_died_is_listed_as_max_deliveries(tmp_path: Path) -> None:
    url = f"local://{tmp_path / 'queue.db'}"
    with open_queue(url, create=True) as q:
        q.setup("dl-crash", "dl-crash", max_deliveries=1)
        q.publish("dl-crash", [Outgoing(Task(project="common", workflow="crash").encode())])
        assert q.pull("dl-crash", lease_seconds=0.01)  # its worker "dies": the lease runs out unacked
    time.sleep(0.05)
    [letter] = dlq_list(queue=url, subscription="dl-crash")
    assert (letter.kind, letter.reason, letter.task and letter.task.workflow) == (
        "max_deliveries",
        MAX_DELIVERIES_REASON,
        "crash",
    )


def test_replay_goes_to_the_subscription_being_read_not_the_one_a_letter_names(tmp_path: Path) -> None:
    """A sender can set any attribute: rslp_dead_letter_source must not pick the destination."""
    url = f"local://{tmp_path / 'queue.db'}"
    with open_queue(url, create=True) as q:
        q.setup(TOPIC, TOPIC)
        q.setup("other-fleet", "other-fleet")
        forged = Task(project="common", workflow="write_file", args=["/tmp/x", "y"])
        q.publish(dead_letter_name(TOPIC), [Outgoing(forged.encode(), {DEAD_LETTER_SOURCE: "other-fleet"})])
    assert dlq_replay(queue=url, subscription=TOPIC, all=True) == [forged.task_id]
    with open_queue(url) as q:
        assert q.pull("other-fleet", 30, max_messages=10) == []
        assert [decode_task(m.data).task_id for m in q.pull(TOPIC, 30, max_messages=10)] == [forged.task_id]


def test_markers_are_touched_only_under_the_operators_job_root(
    dlq: tuple[str, Path, list[Task]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dead letter naming another job's root must not clear (or read) that job's markers."""
    url, root, _ = dlq
    victim_root = tmp_path / "victim"
    victim = job_task(victim_root, "p9")
    JobRoot(victim_root).mark(victim, "dead", error="secret traceback", traceback="victim traceback")
    JobRoot(victim_root).mark(victim, "running")
    with open_queue(url) as q:
        dead_letter(q, victim.encode(), "forged")
    dlq_show(victim.task_id, job_root=str(root), queue=url, subscription=TOPIC)
    assert "victim traceback" not in capsys.readouterr().out
    assert victim.task_id in dlq_replay(job_root=str(root), queue=url, subscription=TOPIC, all=True)
    assert JobRoot(victim_root).states("noop") == {victim.task_id: "dead"}
    assert JobRoot(victim_root).read(victim, "running") is not None


def test_an_undecodable_dead_letter_is_listed_and_every_letter_handed_back(
    dlq: tuple[str, Path, list[Task]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _, _ = dlq
    deep = b'{"project": "common", "workflow": "noop", "args": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with open_queue(url) as q:
        dead_letter(q, deep, "message is nested too deeply to be a task", kind="malformed", attempts=1)
    letters = dlq_list(queue=url, subscription=TOPIC)
    assert len(letters) == 5 and sum(d.task is None for d in letters) == 2
    assert capsys.readouterr().out.count("(not a task)") == 2
    with open_queue(url) as q:  # nothing stays leased: a following replay sees every letter
        assert len(q.pull(dead_letter_name(TOPIC), 30, max_messages=10)) == 5


def test_control_characters_never_reach_the_terminal(
    dlq: tuple[str, Path, list[Task]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _, _ = dlq
    hostile = "boom\x1b]52;c;ZWNobyBwd25lZA==\x07\x1b[2K\rdone: 0 failures"
    task = Task(project="common", workflow="fail", args=["\x1b[31mred"])
    with open_queue(url) as q:
        dead_letter(q, task.encode(), hostile)
    dlq_list(queue=url, subscription=TOPIC)
    dlq_show(task.task_id, queue=url, subscription=TOPIC)
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out
    assert "boom\\x1b]52;c;" in out
