import json

import pytest

from rslp.task import SCHEMA_VERSION, Task, TaskDecodeError, decode_task


def test_ancestor_message_parses() -> None:
    task = decode_task(b'{"project": "common", "workflow": "write_file", "args": ["/tmp/x", "abc"]}')
    assert task.project == "common" and task.workflow == "write_file"
    assert task.args == ["/tmp/x", "abc"]
    assert task.schema_version == SCHEMA_VERSION
    assert task.attempt == 0 and len(task.task_id) == 24


def test_task_id_is_deterministic_per_job_partition_step() -> None:
    a = Task(project="pipeline", workflow="prepare", job_id="j1", partition="p1", step="prepare")
    b = Task(project="pipeline", workflow="prepare", job_id="j1", partition="p1", step="prepare", attempt=2)
    c = Task(project="pipeline", workflow="prepare", job_id="j1", partition="p2", step="prepare")
    assert a.task_id == b.task_id != c.task_id


def test_round_trip_keeps_every_field() -> None:
    t = Task(
        project="common",
        workflow="sleep",
        args=["1"],
        job_id="j",
        job_root="/r",
        partition="p",
        step="s",
        attempt=1,
        parent="x",
        time_limit=5,
    )
    assert decode_task(t.encode()) == t


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"workflow": "x"}', "project: required field is missing"),
        (b'{"project": "common", "workflow": "x", "colour": "red"}', "colour: unknown field"),
        (b'{"project": "common", "workflow": "x", "args": "a b"}', "args"),
        (b'{"project": "common", "workflow": "x", "attempt": -1}', "attempt"),
        (json.dumps({"project": "c", "workflow": "w", "schema_version": 99}).encode(), "newer than this worker"),
    ],
)
def test_malformed_messages_raise_one_line_reason(data: bytes, fragment: str) -> None:
    with pytest.raises(TaskDecodeError) as info:
        decode_task(data)
    assert fragment in info.value.reason
    assert "\n" not in info.value.reason
