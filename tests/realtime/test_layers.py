"""The Redis channel layer waits for a free connection instead of failing."""

import asyncio

import pytest
import redis
from channels_redis.core import RedisChannelLayer
from django.conf import settings

from realtime.layers import WaitingRedisChannelLayer

PREFIX = f"{settings.CHANNEL_LAYERS['default'].get('CONFIG', {}).get('prefix', 'hearo')}-pool"


def small_layer(cls, max_connections: int):
    host = {"address": settings.REDIS_URL, "socket_timeout": None, "max_connections": max_connections}
    return cls(hosts=[host], prefix=PREFIX)


async def crowd_joins_and_leaves(layer) -> int:
    """As when a node's sockets all close at once; return how many stay in the group."""
    channels = [await layer.new_channel() for _ in range(60)]
    client = redis.Redis.from_url(settings.REDIS_URL)
    key = f"{PREFIX}:group:crowd"
    client.delete(key)  # a failed run (the stock pool's) may have left members
    try:
        await asyncio.gather(*(layer.group_add("crowd", c) for c in channels))
        await asyncio.gather(*(layer.group_discard("crowd", c) for c in channels))
        return client.zcard(key)
    finally:
        await layer.close_pools()
        client.delete(key)


@pytest.mark.asyncio
async def test_more_simultaneous_group_calls_than_connections_all_succeed(redis_url):
    assert await crowd_joins_and_leaves(small_layer(WaitingRedisChannelLayer, max_connections=3)) == 0


@pytest.mark.asyncio
async def test_the_stock_pool_fails_the_same_crowd(redis_url):
    # Why the layer exists: redis-py 7's pool raises once it is exhausted.
    with pytest.raises(redis.exceptions.ConnectionError):
        await crowd_joins_and_leaves(small_layer(RedisChannelLayer, max_connections=3))


# -- the lighter receive of process-local channels -------------------------------


def light_layer(capacity: int = 100) -> WaitingRedisChannelLayer:
    host = {"address": settings.REDIS_URL, "socket_timeout": None}
    layer = WaitingRedisChannelLayer(hosts=[host], prefix=f"{PREFIX}-light", capacity=capacity)
    return layer


async def idle_receivers(layer, count: int) -> tuple[list[str], list[asyncio.Task]]:
    channels = [await layer.new_channel() for _ in range(count)]
    tasks = [asyncio.create_task(layer.receive(c)) for c in channels]
    await asyncio.sleep(0.2)
    return channels, tasks


@pytest.mark.asyncio
async def test_idle_receivers_cost_no_task_of_their_own_and_each_gets_its_message(redis_url):
    layer = light_layer()
    before = len(asyncio.all_tasks())
    channels, tasks = await idle_receivers(layer, 100)
    try:
        # The hundred receives and ONE reader; channels-redis adds two tasks per receive.
        assert len(asyncio.all_tasks()) - before == 100 + 1
        await layer.send(channels[7], {"type": "x", "n": 7})
        await layer.group_add("some", channels[3])
        await layer.group_add("some", channels[42])
        await layer.group_send("some", {"type": "x", "n": "group"})
        done, _ = await asyncio.wait(tasks, timeout=5, return_when=asyncio.ALL_COMPLETED)
        got = {channels.index(c): t.result()["n"] for c, t in zip(channels, tasks, strict=True) if t in done}
        assert got == {7: 7, 3: "group", 42: "group"}
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await layer.flush()


@pytest.mark.asyncio
async def test_a_message_for_a_busy_receiver_is_kept_in_order_up_to_the_capacity(redis_url):
    layer = light_layer(capacity=3)
    busy = await layer.new_channel()
    channels, tasks = await idle_receivers(layer, 1)  # someone waits: the reader runs
    # ``busy``'s consumer received once and is now busy with it (not waiting).
    first = asyncio.create_task(layer.receive(busy))
    await asyncio.sleep(0.1)
    await layer.send(busy, {"type": "x", "n": "first"})
    assert (await asyncio.wait_for(first, 5))["n"] == "first"
    try:
        for n in range(5):
            await layer.send(busy, {"type": "x", "n": n})
        await layer.send(channels[0], {"type": "x", "n": "last"})
        assert (await asyncio.wait_for(tasks[0], 5))["n"] == "last"  # sent after the five: all five were read
        # Nobody was waiting on ``busy``: the newest three were kept (channels-redis drops the oldest too).
        assert [(await layer.receive(busy))["n"] for _ in range(3)] == [2, 3, 4]
        layer.forget(busy)
        layer.forget(channels[0])
    finally:
        await layer.flush()


@pytest.mark.asyncio
async def test_a_cancelled_receive_leaves_no_waiter_and_the_last_consumer_gone_stops_the_reader(redis_url):
    layer = light_layer()
    channels, tasks = await idle_receivers(layer, 3)
    local = layer._channels()
    reader = local.reader
    tasks[0].cancel()
    await asyncio.gather(tasks[0], return_exceptions=True)
    assert set(local.waiting) == set(channels[1:])
    for task in tasks[1:]:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert local.waiting == {}
    for channel in channels[:2]:
        layer.forget(channel)
    assert not reader.done()  # one consumer still lives
    await layer.send(channels[0], {"type": "x"})  # to a consumer that has gone: not kept
    await layer.send(channels[2], {"type": "x", "n": "kept"})
    for _ in range(50):
        if layer._kept:
            break
        await asyncio.sleep(0.05)
    assert list(layer._kept) == [channels[2]]
    layer.forget(channels[2])
    await asyncio.gather(reader, return_exceptions=True)
    assert reader.cancelled() and layer._kept == {}
    await layer.flush()


@pytest.mark.asyncio
async def test_the_reader_waits_out_redis_errors_and_the_receivers_get_their_messages(redis_url, monkeypatch):
    layer = light_layer()
    real = WaitingRedisChannelLayer.receive_single
    failures = {"left": 3}

    async def flaky(self, channel):
        if failures["left"]:
            failures["left"] -= 1
            raise redis.exceptions.ConnectionError("Error 111 connecting. Connection refused.")
        return await real(self, channel)

    monkeypatch.setattr(WaitingRedisChannelLayer, "receive_single", flaky)
    monkeypatch.setattr("realtime.layers.READ_RETRY_SECONDS", (0.01, 0.05))
    channels, tasks = await idle_receivers(layer, 2)
    try:
        await layer.send(channels[1], {"type": "x", "n": 1})
        assert (await asyncio.wait_for(tasks[1], 5))["n"] == 1
        assert failures["left"] == 0 and not tasks[0].done()  # the other still waits, untouched
    finally:
        tasks[0].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await layer.flush()
