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


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"task_id": "../x"}, "task_id"),
        ({"task_id": "/tmp/some/dir"}, "task_id"),
        ({"job_id": "j", "partition": "p", "step": "../../outside"}, "step"),
        ({"job_id": "j", "partition": "a/b", "step": "s"}, "partition"),
        ({"job_id": "..", "partition": "p", "step": "s"}, "job_id"),
        ({"parent": "../../x"}, "parent"),
        ({"project": "../common"}, "project"),
    ],
)
def test_ids_that_would_become_paths_outside_a_root_are_rejected_on_decode(
    fields: dict[str, str], fragment: str
) -> None:
    with pytest.raises(TaskDecodeError) as info:
        decode_task(json.dumps({"project": "common", "workflow": "noop", **fields}).encode())
    assert fragment in info.value.reason


def test_a_job_task_id_must_be_derived_from_job_partition_and_step() -> None:
    """Else a message could name (and mark done) another task's markers."""
    other = Task(project="pipeline", workflow="predict", job_id="j", partition="p2", step="predict")
    message = {"project": "pipeline", "workflow": "predict", "job_id": "j", "partition": "p1", "step": "predict"}
    with pytest.raises(TaskDecodeError, match="derived from its job_id"):
        decode_task(json.dumps({**message, "task_id": other.task_id}).encode())
    with pytest.raises(TaskDecodeError, match="missing partition, step"):
        decode_task(json.dumps({"project": "common", "workflow": "noop", "job_id": "j"}).encode())
    with pytest.raises(TaskDecodeError, match="missing"):
        decode_task(json.dumps({"project": "common", "workflow": "noop", "job_root": "/r"}).encode())


@pytest.mark.parametrize("field", ["not_before", "created"])
def test_times_without_a_timezone_are_rejected(field: str) -> None:
    with pytest.raises(TaskDecodeError, match="needs a timezone"):
        decode_task(json.dumps({"project": "common", "workflow": "noop", field: "2030-01-01T00:00:00"}).encode())


def test_deeply_nested_json_is_a_decode_error_not_a_recursion_error() -> None:
    nested = b'{"project": "common", "workflow": "noop", "args": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(TaskDecodeError, match="nested too deeply"):
        decode_task(nested)


def test_wrongly_typed_job_fields_are_a_decode_error() -> None:
    with pytest.raises(TaskDecodeError, match="job_id"):
        decode_task(b'{"project": "common", "workflow": "noop", "job_id": 5, "partition": "p", "step": "s"}')


def test_reasons_stay_short_and_unknown_fields_are_counted() -> None:
    """A 4 MB message must not become a 4 MB reason."""
    message = {"project": "common", "workflow": "noop", **{f"f{i}": "x" * 400 for i in range(10_000)}}
    message["args"] = [1] * 10_000  # type: ignore[assignment]
    with pytest.raises(TaskDecodeError) as info:
        decode_task(json.dumps(message).encode())
    reason = info.value.reason
    assert len(reason) <= 1000
    assert "10000 unknown fields" in reason and "more errors" in reason
    assert "xxxx" not in reason
