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
    try:
        await asyncio.gather(*(layer.group_add("crowd", c) for c in channels))
        await asyncio.gather(*(layer.group_discard("crowd", c) for c in channels))
    finally:
        await layer.close_pools()
    client = redis.Redis.from_url(settings.REDIS_URL)
    left = client.zcard(f"{PREFIX}:group:crowd")
    client.delete(f"{PREFIX}:group:crowd")
    return left


@pytest.mark.asyncio
async def test_more_simultaneous_group_calls_than_connections_all_succeed(redis_url):
    assert await crowd_joins_and_leaves(small_layer(WaitingRedisChannelLayer, max_connections=3)) == 0


@pytest.mark.asyncio
async def test_the_stock_pool_fails_the_same_crowd(redis_url):
    # Why the layer exists: redis-py 7's pool raises once it is exhausted.
    with pytest.raises(redis.exceptions.ConnectionError):
        await crowd_joins_and_leaves(small_layer(RedisChannelLayer, max_connections=3))
