"""The rank hub explains a rank that went up: ``reason: "urgent_ahead"``, and only for an urgent join ahead."""

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from matching import counselors
from queues import services
from queues.models import Queue, Registration
from realtime.hub import RankHub, Watcher
from tests.support.routing import line, skills

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def join(seconds_ago: float = 0, **kwargs) -> services.JoinResult:
    """Join (from async code) as if ``seconds_ago`` seconds ago."""
    now = timezone.now() - timedelta(seconds=seconds_ago)
    return await database_sync_to_async(services.registration_join)(now=now, **kwargs)


async def watching(stomp, joined: services.JoinResult):
    """Connect and subscribe to the customer's rank; return the client and its snapshot."""
    client = stomp()
    await client.connect(**bearer(joined.token))
    customer_id = joined.registration.customer.customer_id
    await client.send("SUBSCRIBE", {"id": "s", "destination": f"/topic/queue-rank/{customer_id}"})
    return client, await client.snapshot()


async def test_an_urgent_join_ahead_pushes_the_customers_it_passed_with_reason_urgent_ahead(stomp):
    long_waiting = await join(900)  # joined before the head start (600 s) reaches
    recent = await join(300)
    long_client, snapshot = await watching(stomp, long_waiting)
    assert snapshot["rank"] == 1
    recent_client, snapshot = await watching(stomp, recent)
    assert snapshot["rank"] == 2

    await join(urgent=True)

    pushed = await recent_client.json()
    assert (pushed["status"], pushed["rank"], pushed["reason"]) == ("WAITING", 3, "urgent_ahead")
    assert pushed["queueId"] == "general"
    assert "estimatedWaitSeconds" in pushed
    assert await recent_client.nothing()  # exactly one push
    assert await long_client.nothing()  # its rank did not change: nothing to say


async def test_a_normal_join_behind_pushes_nobody(stomp):
    first, second = await join(20), await join(10)
    first_client, _ = await watching(stomp, first)
    second_client, _ = await watching(stomp, second)
    await join()
    assert await first_client.nothing(0.5)
    assert await second_client.nothing(0.1)


async def test_a_rank_that_goes_down_after_an_urgent_join_says_no_reason(stomp):
    ahead, mine = await join(100), await join(50)
    client, _ = await watching(stomp, mine)
    await join(urgent=True)
    assert (await client.json())["reason"] == "urgent_ahead"

    await database_sync_to_async(services.registration_cancel)(registration=ahead.registration)

    pushed = await client.json()
    assert pushed["rank"] == 2
    assert "reason" not in pushed


async def test_an_urgent_join_that_lands_behind_pushes_nobody(stomp):
    old = await join(700)  # more than the head start ago: the urgent join lands behind
    client, _ = await watching(stomp, old)
    await join(urgent=True)
    assert await client.nothing(0.5)


async def test_an_urgent_join_in_another_queue_or_language_pushes_nobody(stomp):
    await database_sync_to_async(line)("youth", languages=["ko"])
    korean, english = await join(100), await join(100, language="en")
    korean_client, _ = await watching(stomp, korean)
    english_client, _ = await watching(stomp, english)
    await join(queue_id="youth", urgent=True)
    await join(language="en", urgent=True)
    assert (await english_client.json())["reason"] == "urgent_ahead"  # its own line: yes
    assert await korean_client.nothing(0.5)


async def test_pushed_ranks_carry_the_queue_and_the_estimate(stomp, settings):
    settings.HEARO_DEFAULT_HANDLE_SECONDS = 300

    def youth_desk():
        line("youth", languages=["ko"])
        desk = counselors.counselor_create(username="yuna", password="s3cret-pass-1")
        desk = skills(desk, queues=["youth"], languages=["ko"])
        counselors.counselor_set_status(counselor=desk, status="AVAILABLE")

    await database_sync_to_async(youth_desk)()
    ahead, mine = await join(100, queue_id="youth"), await join(50, queue_id="youth")
    client, snapshot = await watching(stomp, mine)
    assert (snapshot["queueId"], snapshot["rank"], snapshot["estimatedWaitSeconds"]) == ("youth", 2, 600)
    await database_sync_to_async(services.registration_cancel)(registration=ahead.registration)
    pushed = await client.json()
    assert (pushed["queueId"], pushed["rank"], pushed["estimatedWaitSeconds"]) == ("youth", 1, 300)


async def test_the_raw_json_tier_says_urgent_ahead_too():
    from channels.testing import WebsocketCommunicator

    from hearo.asgi import application
    from tests.realtime.conftest import ORIGIN

    mine = await join(60)
    ws = WebsocketCommunicator(application, "/ws/raw", headers=[ORIGIN])
    assert (await ws.connect())[0]
    await ws.send_json_to({"type": "auth", "token": mine.token})
    assert (await ws.receive_json_from())["rank"] == 1
    await join(urgent=True)
    pushed = await ws.receive_json_from()
    assert (pushed["rank"], pushed["reason"]) == (2, "urgent_ahead")
    await ws.disconnect()


# --- the hub driven directly -----------------------------------------------------------------


def hub_watching(registrations: list[Registration]) -> tuple[RankHub, dict[int, list[dict]]]:
    hub = RankHub()  # not started: driven directly
    pushed: dict[int, list[dict]] = {}
    for registration in registrations:

        async def push(body, reg_id=registration.id):
            pushed.setdefault(reg_id, []).append(body)

        hub.watch_rank(Watcher(push=push, registration_id=registration.id, customer_id=str(registration.id)))
    return hub, pushed


async def test_a_customer_moved_into_a_line_with_an_urgent_join_is_not_told_urgent_ahead():
    """An overflow is not an urgent join, even when both land in one refresh."""

    def setup():
        general = services.queue_default()
        line("youth", languages=["ko"], overflow_queue=general, overflow_after_seconds=60)
        now = timezone.now()
        services.registration_join(now=now - timedelta(seconds=900))
        services.registration_join(now=now - timedelta(seconds=800))
        return services.registration_join(queue_id="youth", now=now - timedelta(seconds=700)).registration

    teenager = await database_sync_to_async(setup)()
    hub, pushed = hub_watching([teenager])
    await hub.refresh()
    assert pushed[teenager.id][-1]["rank"] == 1

    def overflow_and_urgent_join():
        Registration.objects.filter(pk=teenager.pk).update(queue=Queue.objects.get(pk="general"))
        services.registration_join(urgent=True)

    await database_sync_to_async(overflow_and_urgent_join)()
    await hub.refresh({"general", "youth"}, urgent={("general", None)})
    moved = pushed[teenager.id][-1]
    assert (moved["queueId"], moved["rank"]) == ("general", 3)
    assert "reason" not in moved


async def test_an_urgent_join_in_one_language_does_not_explain_a_push_back_in_another():
    """An urgent English join and a Korean requeue in one refresh: only the English line hears urgent_ahead."""

    def setup():
        now = timezone.now()
        korean = services.registration_join(now=now - timedelta(seconds=50)).registration
        english = services.registration_join(language="en", now=now - timedelta(seconds=50)).registration
        return korean, english

    korean, english = await database_sync_to_async(setup)()
    hub, pushed = hub_watching([korean, english])
    await hub.refresh()

    def requeue_and_urgent_join():
        # A Korean customer put back ahead (as a requeue keeps its old place), an urgent English join.
        services.registration_join(now=timezone.now() - timedelta(seconds=100))
        return services.registration_join(language="en", urgent=True)

    await database_sync_to_async(requeue_and_urgent_join)()
    hub._changed({"queues": ["general"], "reason": "requeued"})
    hub._changed({"queues": ["general"], "reason": "urgent_joined", "language": "en"})
    await hub.refresh({"general"}, urgent=hub._urgent)
    assert pushed[korean.id][-1]["rank"] == 2
    assert "reason" not in pushed[korean.id][-1]
    assert (pushed[english.id][-1]["rank"], pushed[english.id][-1]["reason"]) == (2, "urgent_ahead")
