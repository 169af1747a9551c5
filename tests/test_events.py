"""The pushed bodies: a WAITING body encoded from a per-refresh template is byte for byte ``compact_json``'s."""

import json

import pytest

from common import events


@pytest.mark.parametrize(
    ("customer_id", "queue_id", "eta", "eta_reason", "reason"),
    [
        ("customer_abc", "general", 240, None, None),
        ("customer_abc", "general", None, "no_counselor_online", None),
        ("customer_abc", "youth", None, "closed", "urgent_ahead"),
        ("customer_abc", "youth", 60, "ignored_when_there_is_a_number", "overflow"),
        ('c"quote\\back/slash', "청소년", 0, None, None),  # escaped in JSON; non-ASCII as \u escapes
        ("customer_abc", "general", 12.5, None, None),  # not an int: encoded as JSON would
    ],
)
def test_a_templated_waiting_body_is_the_dict_and_the_bytes_compact_json_would_write(
    customer_id, queue_id, eta, eta_reason, reason
):
    bodies = events.WaitingBodies(queue_id=queue_id, version=41, timestamp=1_765_000_000_123)
    fields = {"registration_id": 7, "rank": 3, "eta": eta, "eta_reason": eta_reason, "reason": reason}
    body = bodies.body(customer_id=customer_id, customer_json=events.compact_json(customer_id).encode(), **fields)
    plain = events.waiting(
        customer_id=customer_id, queue_id=queue_id, version=41, timestamp=1_765_000_000_123, **fields
    )
    assert body == plain
    assert body.json == events.compact_json(plain).encode()
    assert json.loads(body.json) == plain
