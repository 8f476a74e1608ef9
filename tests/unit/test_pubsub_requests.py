from rslp.queue import Outgoing
from rslp.queue.pubsub import MAX_REQUEST_BYTES, MAX_REQUEST_MESSAGES, _requests


def test_publish_requests_respect_the_message_count_limit() -> None:
    chunks = list(_requests([Outgoing(b"x") for _ in range(2 * MAX_REQUEST_MESSAGES + 1)]))
    assert [len(c) for c in chunks] == [MAX_REQUEST_MESSAGES, MAX_REQUEST_MESSAGES, 1]


def test_publish_requests_respect_the_size_limit() -> None:
    big = b"x" * (MAX_REQUEST_BYTES // 3 + 1)
    chunks = list(_requests([Outgoing(big, {"k": "v"}) for _ in range(4)]))
    assert [len(c) for c in chunks] == [2, 2]
    assert chunks[0][0] == {"data": big, "attributes": {"k": "v"}}


def test_no_messages_no_requests() -> None:
    assert list(_requests([])) == []
