"""The dashboard hears its wrap-up over the socket: STATUS WRAP_UP with wrapUpUntil, then AVAILABLE."""

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from common import events
from matching import counselors, handoff, matcher
from matching.models import Counselor, Match
from queues import services

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def call_completed(counselor: Counselor) -> Counselor:
    """Put the counselor on shift, match it with a customer, talk, complete; return it refreshed."""
    counselors.counselor_set_status(counselor=counselor, status="AVAILABLE")
    services.registration_join()
    matcher.match_pass()
    match = Match.objects.get(counselor=counselor, ended_at__isnull=True)
    handoff.match_joined(match_id=match.id, side="customer", actor="customer")
    handoff.match_joined(match_id=match.id, side="counselor", actor="counselor")
    handoff.match_complete(match_id=match.id, counselor=counselor)
    counselor.refresh_from_db()
    return counselor


async def next_of_type(client, kind: str) -> dict:
    while True:
        body = await client.json()
        if body.get("type") == kind:
            return body


async def test_the_dashboard_gets_the_wrap_up_countdown_then_available_by_itself(stomp, counselor_async):
    counselor, key = counselor_async
    client = stomp()
    await client.connect(Authorization=f"Token {key}")
    await client.send("SUBSCRIBE", {"id": "c", "destination": f"/topic/counselor/{counselor.counselor_id}"})
    assert (await client.json())["type"] == "QUEUE"

    counselor = await database_sync_to_async(call_completed)(counselor)

    await next_of_type(client, "MATCH_ENDED")
    wrap_up = await next_of_type(client, "STATUS")
    assert (wrap_up["status"], wrap_up["wrapUpUntil"]) == ("WRAP_UP", events.epoch_ms(counselor.wrap_up_until))
    assert wrap_up["wrapUpUntil"] > events.epoch_ms(timezone.now())

    await database_sync_to_async(matcher.match_pass)(now=counselor.wrap_up_until)
    available = await next_of_type(client, "STATUS")
    assert available["status"] == "AVAILABLE" and "wrapUpUntil" not in available
