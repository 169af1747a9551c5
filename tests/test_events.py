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


def test_one_refresh_template_keeps_each_kind_of_body_apart():
    """Bodies of one line in one refresh differ in their optional keys: each still matches compact_json's."""
    bodies = events.WaitingBodies(queue_id="general", version=9, timestamp=1_765_000_000_000)
    kinds = [
        (None, "no_counselor_online", None),
        (None, "no_counselor_online", "urgent_ahead"),
        (None, "closed", None),
        (None, None, None),
        (None, "", "overflow"),
        (120, "no_counselor_online", None),  # a number: no reason for its absence
        (120, None, "urgent_ahead"),
        (None, "no_counselor_online", None),  # the first kind again, after the others
    ]
    for i, (eta, eta_reason, reason) in enumerate(kinds):
        fields = {"registration_id": i, "rank": i + 1, "eta": eta, "eta_reason": eta_reason, "reason": reason}
        body = bodies.body(customer_id=f"c{i}", customer_json=events.compact_json(f"c{i}").encode(), **fields)
        plain = events.waiting(
            customer_id=f"c{i}", queue_id="general", version=9, timestamp=1_765_000_000_000, **fields
        )
        assert body.json == events.compact_json(plain).encode(), (eta, eta_reason, reason)
