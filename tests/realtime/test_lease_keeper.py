"""A node renews its quiet customers' leases together: one pipeline per batch, no task per socket."""

import pytest

from queues import leases
from realtime import lease_keeper as keeper_module
from realtime.lease_keeper import LeaseKeeper

pytestmark = pytest.mark.asyncio


class FakeConnection:
    def __init__(self, registration_id: int, touched: float = 0.0, waiting: bool = True) -> None:
        self.registration_id, self._touched, self.waiting = registration_id, touched, waiting

    def lease_due(self, now: float, quiet: float) -> bool:
        return self.waiting and now - self._touched >= quiet

    def mark_renewed(self, now: float) -> int:
        self._touched = now
        return self.registration_id


async def test_the_keeper_renews_every_quiet_customer_in_batches_and_skips_the_rest(monkeypatch):
    batches: list[list[int]] = []

    async def renew_many(kind, ids):
        assert kind == "registration"
        batches.append(list(ids))

    monkeypatch.setattr(leases, "arenew_many", renew_many)
    keeper = LeaseKeeper()
    quiet = [FakeConnection(i) for i in range(1, 1201)]
    recently_heard = FakeConnection(5000, touched=99.0)  # a client frame renewed it half a second ago
    matched = FakeConnection(5001, waiting=False)  # left the queue: no lease to keep
    keeper.connections.update([*quiet, recently_heard, matched])

    assert await keeper.renew_quiet(now=100.0, quiet=5.0) == 1200
    assert [len(b) for b in batches] == [500, 500, 200]  # BATCH per round trip
    assert sorted(i for b in batches for i in b) == list(range(1, 1201))

    batches.clear()
    assert await keeper.renew_quiet(now=101.0, quiet=5.0) == 0  # all renewed a second ago
    assert batches == []


async def test_a_keeper_that_cannot_reach_redis_gives_up_until_the_next_interval(monkeypatch):
    from redis.exceptions import ConnectionError as RedisConnectionError

    calls = []

    async def renew_many(kind, ids):
        calls.append(len(ids))
        raise RedisConnectionError("Error 111 connecting")

    monkeypatch.setattr(leases, "arenew_many", renew_many)
    keeper = LeaseKeeper()
    keeper.connections.update(FakeConnection(i) for i in range(1, 1001))
    assert await keeper.renew_quiet(now=100.0, quiet=5.0) == 1000
    assert calls == [500]  # no second batch into a dead Redis


async def test_each_event_loop_has_one_keeper():
    assert keeper_module.lease_keeper() is keeper_module.lease_keeper()


async def test_a_batch_of_leases_is_one_redis_command_that_the_cache_reads_back(redis_url, settings):
    """The keeper's batch is one script call (not a command per lease), writing the keys and values the cache reads."""
    from asgiref.sync import sync_to_async
    from django.core.cache import cache
    from redis.asyncio import Redis

    from tests.support.redis_monitor import in_scripts, redis_monitor, sent

    ids = list(range(910_001, 910_001 + keeper_module.BATCH))
    await leases.arenew_many("registration", ids[:1])  # the first call loads the script
    async with redis_monitor(redis_url) as lines:
        await leases.arenew_many("registration", ids)
    prefix = cache.make_and_validate_key(leases.lease_key("registration", ""))
    calls = sent(lines, f'"{prefix}" ')
    assert len(calls) == 1 and calls[0].startswith('"EVALSHA"')
    assert len(in_scripts(lines, f'"{prefix}91')) == len(ids)  # a SET per lease, on the server
    alive = await sync_to_async(leases.lease_alive)("registration", ids)
    assert alive == set(ids)
    admin = Redis.from_url(redis_url)
    try:
        ttl = await admin.ttl(cache.make_and_validate_key(leases.lease_key("registration", ids[-1])))
        assert settings.HEARO_LEASE_SECONDS - 5 <= ttl <= settings.HEARO_LEASE_SECONDS
    finally:
        await admin.aclose()
