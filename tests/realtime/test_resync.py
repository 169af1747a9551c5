"""After losing Redis a node repairs what it may have missed: groups, lost messages, sockets kept open."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from redis.exceptions import ConnectionError as RedisConnectionError

from common import publish
from queues import services
from queues.models import Registration
from realtime import hub as hub_module
from realtime.hub import RankHub, Watcher, get_hub

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def watching(stomp, joined):
    """Return a STOMP client subscribed to the joined customer's rank."""
    client = stomp()
    await client.connect(Authorization=f"Bearer {joined.token}")
    destination = f"/topic/queue-rank/{joined.registration.customer.customer_id}"
    await client.send("SUBSCRIBE", {"id": "0", "destination": destination})
    return client


async def test_a_resync_asks_only_what_the_queue_read_cannot_vouch_for():
    def two_in_line_one_matched():
        ids = [services.registration_join(display_name=n).registration.id for n in "abc"]
        Registration.objects.filter(pk=ids[1]).update(status="MATCHED")
        return ids

    ids = await database_sync_to_async(two_in_line_one_matched)()
    hub = RankHub()  # not started: driven directly
    asked: list[tuple[str, bool]] = []

    def watcher(name: str, registration_id: int | None = None) -> Watcher:
        async def resync(stale: bool, name=name) -> None:
            asked.append((name, stale))

        async def push(body) -> None:
            pass

        return Watcher(push=push, registration_id=registration_id, customer_id=name, resync=resync)

    for name, registration_id in zip("abc", ids, strict=True):
        hub.watch_rank(watcher(name, registration_id))
    hub.watch_queue(watcher("desk"))
    await hub.refresh()
    assert asked == []  # an ordinary refresh re-syncs nobody
    await hub.refresh(resync=True)
    assert sorted(asked) == [("a", False), ("b", True), ("c", False), ("desk", True)]


async def test_a_resync_that_meets_redis_still_settling_is_tried_again(monkeypatch):
    monkeypatch.setattr(hub_module, "RESUBSCRIBE_SECONDS", 0.01)
    hub = RankHub()  # not started: driven directly
    calls = {"settling": 0, "broken": 0, "fine": 0}

    def watcher(name: str, fails: int, error: Exception) -> Watcher:
        left = {"fails": fails}

        async def resync(stale: bool) -> None:
            calls[name] += 1
            if left["fails"]:
                left["fails"] -= 1
                raise error

        async def push(body) -> None:
            pass

        return Watcher(push=push, customer_id=name, resync=resync)

    # The channel layer's pool still holds a connection to the lost primary, twice.
    hub.watch_queue(watcher("settling", 2, RedisConnectionError("Connection reset by peer")))
    hub.watch_queue(watcher("broken", 5, ValueError("a bug, not Redis")))
    hub.watch_queue(watcher("fine", 0, ValueError()))
    await hub.refresh(resync=True)
    assert hub._resync_retry is not None
    await asyncio.wait_for(hub._resync_retry, timeout=5)
    # Redis errors are retried until the connection re-syncs; anything else is logged once, not retried.
    assert calls == {"settling": 3, "broken": 1, "fine": 1}


async def test_a_message_lost_while_redis_was_away_reaches_the_socket_after_the_resync(stomp, sjoin, monkeypatch):
    joined = await sjoin("Mina")
    client = await watching(stomp, joined)
    assert (await client.json())["status"] == "WAITING"

    # The cancel commits, but its message is lost (Redis was failing over).
    monkeypatch.setattr(publish, "deliver", lambda group, message: None)
    registration = await database_sync_to_async(Registration.objects.get)(pk=joined.registration.id)
    await database_sync_to_async(services.registration_cancel)(registration=registration)
    assert await client.nothing()

    hub = await get_hub()
    await hub.refresh(resync=True)
    told = await client.json()
    assert (told["status"], told["registrationId"]) == ("CANCELLED", joined.registration.id)
    await hub.refresh(resync=True)
    assert await client.nothing()  # told once: a second resync finds nothing new
    await client.close()


async def test_a_socket_outlives_a_channel_layer_that_fails_for_a_while(stomp, sjoin, monkeypatch):
    from channels.layers import get_channel_layer

    layer_class = type(get_channel_layer())  # in memory, or channels-redis with REDIS_URL
    failures = {"left": 3}
    real_receive = layer_class.receive

    async def flaky_receive(self, channel):
        if failures["left"]:
            failures["left"] -= 1
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        return await real_receive(self, channel)

    monkeypatch.setattr(layer_class, "receive", flaky_receive)
    joined = await sjoin("Mina")
    client = await watching(stomp, joined)
    assert (await client.json())["rank"] == 1
    for _ in range(50):
        if not failures["left"]:
            break
        await asyncio.sleep(0.1)
    assert failures["left"] == 0  # every failure was met, and the consumer retried past them

    registration = await database_sync_to_async(Registration.objects.get)(pk=joined.registration.id)
    await database_sync_to_async(services.registration_cancel)(registration=registration)
    assert (await client.json(timeout=5))["status"] == "CANCELLED"  # the layer's message still arrives
    await client.close()


async def test_a_socket_that_closes_while_redis_is_away_leaves_quietly(stomp, sjoin, monkeypatch):
    from channels.layers import get_channel_layer

    joined = await sjoin("Mina")
    client = await watching(stomp, joined)
    assert (await client.json())["rank"] == 1
    tried = []

    async def unreachable(self, group, channel):
        tried.append(group)
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(type(get_channel_layer()), "group_discard", unreachable)
    await client.close()  # the consumer's disconnect handler raises nothing into the server
    monkeypatch.undo()  # Redis is back for the hub's own teardown
    assert tried == [f"customer.{joined.registration.customer.customer_id}"]
