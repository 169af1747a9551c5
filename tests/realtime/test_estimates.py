"""A waiting customer's estimate follows who serves its line, even when its rank does not move."""

import pytest
from channels.db import database_sync_to_async

from matching import counselors
from queues import services
from realtime.hub import eta_moved

ASYNC_DB = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def async_db(test):
    for mark in ASYNC_DB:
        test = mark(test)
    return test


@pytest.fixture(autouse=True)
def _no_matching(settings):
    # A counselor coming on shift must change the estimate, not match the customer away.
    settings.HEARO_MATCH_ON_EVENTS = False
    settings.HEARO_DEFAULT_HANDLE_SECONDS = 300


async def watching(stomp):
    joined = await database_sync_to_async(services.registration_join)()
    client = stomp()
    await client.connect(Authorization=f"Bearer {joined.token}")
    customer_id = joined.registration.customer.customer_id
    await client.send("SUBSCRIBE", {"id": "s", "destination": f"/topic/queue-rank/{customer_id}"})
    return client, await client.snapshot()


def set_status(counselor, status: str):
    counselor.refresh_from_db()
    return counselors.counselor_set_status(counselor=counselor, status=status)


@async_db
async def test_a_counselor_coming_on_shift_and_leaving_moves_the_estimate_of_a_customer_whose_rank_stays(stomp):
    desk = await database_sync_to_async(counselors.counselor_create)(username="alice", password="s3cret-pass-1")
    client, snapshot = await watching(stomp)
    assert (snapshot["rank"], snapshot["estimatedWaitSeconds"]) == (1, None)
    assert snapshot["estimatedWaitReason"] == "no_counselor_online"

    await database_sync_to_async(set_status)(desk, "AVAILABLE")
    pushed = await client.json()
    assert (pushed["rank"], pushed["estimatedWaitSeconds"]) == (1, 300)
    assert "estimatedWaitReason" not in pushed

    await database_sync_to_async(set_status)(desk, "AWAY")
    pushed = await client.json()
    assert (pushed["rank"], pushed["estimatedWaitSeconds"]) == (1, None)
    assert pushed["estimatedWaitReason"] == "no_counselor_online"
    assert await client.nothing(0.3)


@async_db
async def test_a_join_behind_does_not_re_push_an_unchanged_estimate(stomp):
    client, _ = await watching(stomp)
    await database_sync_to_async(services.registration_join)()
    assert await client.nothing(0.5)


def test_an_estimate_is_news_when_its_reason_changes_or_it_moves_by_a_minute_and_a_tenth():
    assert eta_moved((None, "no_counselor_online"), (300, None))
    assert eta_moved((300, None), (None, "closed"))
    assert eta_moved((600, None), (660, None))
    assert not eta_moved((600, None), (630, None))
    assert eta_moved((3000, None), (3300, None)) and not eta_moved((3000, None), (3250, None))
    assert not eta_moved(None, (300, None))  # never told: a rank push will carry it
