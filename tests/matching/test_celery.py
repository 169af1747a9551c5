"""The matcher on a real Celery worker over real Redis, triggered by events (no beat runs)."""

import asyncio

import pytest
from channels.layers import channel_layers
from django.db import connection

from common import events
from matching import counselors
from matching.models import Counselor, Match
from tests.support.processes import celery_worker

C = Counselor.Status
# Functional bound only: the pair is expected in well under a second.
BOUND_SECONDS = 5.0


async def collect(layer, channel: str, wanted: set[str]) -> dict[str, dict]:
    """Receive until every wanted message kind arrived; key by type (counselor) or status (customer)."""
    got: dict[str, dict] = {}
    while not wanted <= got.keys():
        message = await layer.receive(channel)
        body = message.get("body", {})
        got.setdefault(body.get("type") or body.get("status", ""), body)
    return got


def go_available(counselor: Counselor) -> None:
    try:
        counselors.counselor_set_status(counselor=counselor, status=C.AVAILABLE)
    finally:
        connection.close()  # this ran on a helper thread


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_pairs_at_once_when_a_counselor_becomes_available(redis_url, settings, tmp_path, on_shift, waiting):
    settings.HEARO_MATCH_ON_EVENTS = True  # the real trigger, to the real broker
    settings.HEARO_INPROCESS_MATCHER = False
    counselor = on_shift(C.AWAY)
    (visit,) = waiting(1)  # nobody free yet: the pass this triggers pairs no one
    customer_group = events.customer_group(visit.customer.customer_id)
    counselor_group = events.counselor_group(counselor.counselor_id)
    layer = channel_layers.make_backend("default")  # a private instance: its own event loop

    async def scenario() -> dict[str, dict]:
        channel = await layer.new_channel()
        await layer.group_add(customer_group, channel)
        await layer.group_add(counselor_group, channel)
        try:
            await asyncio.to_thread(go_available, counselor)
            return await asyncio.wait_for(collect(layer, channel, {"MATCHED", "MATCH_ASSIGNED"}), BOUND_SECONDS)
        finally:
            await layer.group_discard(customer_group, channel)
            await layer.group_discard(counselor_group, channel)
            await layer.close_pools()

    with celery_worker(tmp_path) as worker:
        try:
            got = asyncio.run(scenario())
        except TimeoutError:
            pytest.fail(f"no match published within {BOUND_SECONDS}s; worker log:\n{worker.output()}")
        log = worker.output()

    match = Match.objects.get()
    assert (match.registration_id, match.counselor_id) == (visit.id, counselor.id)
    assert (got["MATCHED"]["matchId"], got["MATCHED"]["identity"]) == (match.id, visit.customer.identity)
    assigned = got["MATCH_ASSIGNED"]
    assert (assigned["matchId"], assigned["roomName"], assigned["identity"]) == (
        match.id,
        match.room_name,
        counselor.identity,
    )
    assert "matching.match_pass" in log  # the worker ran it, not this process
